"""`retrain trigger` publishes one RetrainEvent for a person's reason, and prints its id."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from retrain.consumers.decoding import decode_record
from retrain.schemas import RetrainEvent, RetrainReason, TrainingWindow
from retrain.settings import KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import read_all


def trigger(kafka_settings: KafkaSettings, topics: TopicSettings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        "RETRAIN_TOPIC_RETRAIN_EVENTS": topics.retrain_events,
    }
    return subprocess.run(
        [sys.executable, "-m", "retrain.cli", "trigger", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("reason", "window", "expected_window"),
    [("business", ["--window", "5000"], TrainingWindow(last_n=5_000)), ("feedback", [], None)],
)
def test_trigger_publishes_one_decodable_retrain_event(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, reason: str, window: list[str], expected_window
):
    note = "quarter closed: new pricing since Monday"
    result = trigger(kafka_settings, created_topics, "--model", "churn", "--reason", reason, "--note", note, *window)

    assert result.returncode == 0, result.stderr
    [record] = read_all(kafka_settings, created_topics.retrain_events, created_topics.control_partitions)
    event = decode_record(record, RetrainEvent)
    assert result.stdout == f"{event.event_id}\n"
    assert record.key == b"churn"
    assert (event.model_id, event.reason, event.note) == ("churn", RetrainReason(reason), note)
    assert event.detector is None and event.model_version is None
    assert event.suggested_window == expected_window
    assert f"{reason} retrain of churn published to {created_topics.retrain_events}[0]@0" in result.stderr


def test_trigger_refuses_an_invalid_model_id_and_publishes_nothing(
    kafka_settings: KafkaSettings, created_topics: TopicSettings
):
    result = trigger(kafka_settings, created_topics, "--model", "../etc", "--reason", "manual", "--note", "x")

    assert result.returncode == 1 and result.stdout == ""
    assert "invalid retrain event" in result.stderr and "model_id" in result.stderr
    assert read_all(kafka_settings, created_topics.retrain_events, created_topics.control_partitions) == []
