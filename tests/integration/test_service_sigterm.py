"""SIGTERM: the trainer and the scorer, as processes, exit within 10 s with their offsets committed.

Under both processing guarantees (with ``exactly_once`` the offsets are committed in the last transaction).

(The detector's test is ``test_detector_process.py``.) Each service consumes a known number of records, is sent
SIGTERM, and must exit 0 within 10 s; then its group's committed offsets must be the end of what it reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import TopicPartition

from retrain.producers.scored import START
from retrain.schemas import ScoringRequest, encode
from retrain.settings import KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_admin, make_consumer, make_producer
from tests.helpers.processes import TRAINER_KEY as KEY
from tests.helpers.processes import Trainer, free_port
from tests.helpers.streams import labeled

pytestmark = pytest.mark.kafka


def committed_at_end(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> tuple[dict, dict]:
    admin = make_admin(kafka)
    consumer = make_consumer(kafka, None)
    try:
        offsets = admin.list_group_offsets(group)[group]
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return {tp: offsets[tp].offset if tp in offsets else 0 for tp in tps}, ends
    finally:
        admin.close()
        consumer.close()


def stop_within_10_s(process: subprocess.Popen) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    return time.monotonic() - started


GUARANTEES = pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])


@GUARANTEES
def test_sigterm_stops_the_trainer_with_its_offsets_committed(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path, guarantee: str
):
    producer = make_producer(kafka_settings, linger_ms=20)
    for example in labeled("term", 3_000, variant_after=None, seed=31):
        producer.send(created_topics.labeled_examples, key=b"term", value=encode(example))
    producer.flush()
    producer.close()

    trainer = Trainer(kafka_settings, created_topics, f"trainer-{unique}", tmp_path / "models")
    trainer.env["RETRAIN_KAFKA_PROCESSING_GUARANTEE"] = guarantee
    trainer.start()
    try:
        deadline = time.monotonic() + 90
        while trainer.metric('retrain_buffer_examples{model_id="term"}') != 3_000:
            assert time.monotonic() < deadline, "the trainer did not buffer the 3,000 examples"
            assert trainer.process.poll() is None, trainer.output()
            time.sleep(0.2)
        took = stop_within_10_s(trainer.process)
    finally:
        if trainer.process.poll() is None:
            trainer.process.kill()
    output = trainer.output()
    assert "trainer: reading" in output and "Traceback" not in output and KEY not in output
    committed, ends = committed_at_end(
        kafka_settings, f"trainer-{unique}", created_topics.labeled_examples, created_topics.stream_partitions
    )
    assert committed == ends and sum(ends.values()) == 3_000, (committed, ends, took)


@GUARANTEES
def test_sigterm_stops_the_scorer_with_its_offsets_committed(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path, guarantee: str
):
    producer = make_producer(kafka_settings, linger_ms=20)
    for i in range(2_000):
        request = ScoringRequest(
            prediction_id=f"term-{i}",
            model_id="term",
            features={"x0": float(i % 10), "x1": 1.0, "x2": 2.0},
            timestamp=START + timedelta(seconds=i),
        )
        producer.send(created_topics.scoring_requests, key=b"term", value=encode(request))
    producer.flush()
    producer.close()

    group = f"scorer-{unique}"
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        "RETRAIN_SCORER_GROUP_ID": group,
        "RETRAIN_METRICS_SCORER_PORT": str(free_port()),
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in created_topics.names().items()},
        "RETRAIN_TOPIC_STREAM_PARTITIONS": str(created_topics.stream_partitions),
        "RETRAIN_REGISTRY_PATH": str(tmp_path / "models"),
        "RETRAIN_REGISTRY_HMAC_KEY": KEY,
        "RETRAIN_KAFKA_PROCESSING_GUARANTEE": guarantee,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "retrain.cli", "scorer"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    watcher = make_consumer(kafka_settings, None)
    predictions = [TopicPartition(created_topics.predictions, p) for p in range(created_topics.stream_partitions)]
    try:
        deadline = time.monotonic() + 90
        while sum(watcher.end_offsets(predictions).values()) < 2_000:  # no model yet: the fallback answers
            assert time.monotonic() < deadline, "the scorer did not answer the 2,000 requests"
            assert process.poll() is None, "the scorer exited"
            time.sleep(0.2)
        took = stop_within_10_s(process)
    finally:
        watcher.close()
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert "scorer:" in output and "Traceback" not in output and KEY not in output, output
    committed, ends = committed_at_end(
        kafka_settings, group, created_topics.scoring_requests, created_topics.stream_partitions
    )
    assert committed == ends and sum(ends.values()) == 2_000, (committed, ends, took)
