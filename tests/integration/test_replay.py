"""The replayer against a real broker: every request once, a seeded subset of labels, pacing, stop, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from kafka import KafkaProducer

from retrain.consumers.decoding import decode_record
from retrain.producers import EventPublisher
from retrain.producers.replay import LabelSampler, ReplayConfig, Replayer
from retrain.producers.streams import GeneratorSource
from retrain.schemas import LabelEvent, ScoringRequest
from retrain.settings import KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_producer, read_all, seam_producer


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[KafkaProducer]:
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    yield producer
    producer.close()


def sea(examples: int, seed: int = 42) -> GeneratorSource:
    return GeneratorSource("sea", (0,), (), examples, seed=seed, noise=0.1)


def requests_on(kafka_settings: KafkaSettings, topics: TopicSettings) -> list[ScoringRequest]:
    records = read_all(kafka_settings, topics.scoring_requests, topics.stream_partitions)
    return [decode_record(r, ScoringRequest) for r in records]


def labels_on(kafka_settings: KafkaSettings, topics: TopicSettings) -> list[LabelEvent]:
    return [decode_record(r, LabelEvent) for r in read_all(kafka_settings, topics.labels, topics.stream_partitions)]


def test_every_request_once_and_the_seeded_half_of_the_labels(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, producer: KafkaProducer
):
    source = sea(2_000)
    config = ReplayConfig(label_delay="uniform:0,0.2", label_fraction=0.5, seed=11)
    publisher = EventPublisher(seam_producer(producer), created_topics)

    stats = Replayer(publisher, source, "sea", config, run_id="run-a").run()
    Replayer(publisher, source, "sea", config, run_id="run-b").run()

    sampler = LabelSampler(0.5, config.delay, seed=11)
    delays = [sampler.draw() for _ in range(2_000)]
    labelled = {i: delay for i, delay in enumerate(delays) if delay is not None}
    assert 900 <= len(labelled) <= 1_100
    assert (stats.requests_sent, stats.labels_sent, stats.labels_withheld) == (
        2_000,
        len(labelled),
        2_000 - len(labelled),
    )
    assert (stats.send_errors, stats.labels_pending, stats.stopped) == (0, 0, False)

    requests = requests_on(kafka_settings, created_topics)
    examples = list(source)
    for run in ("run-a", "run-b"):
        sent = [r for r in requests if r.prediction_id.startswith(f"{run}-")]
        assert [r.prediction_id for r in sent] == [f"{run}-{i:08d}" for i in range(2_000)]  # one partition: in order
        assert [r.features for r in sent] == [e.features for e in examples]
        assert {r.model_id for r in sent} == {"sea"}
    labels = labels_on(kafka_settings, created_topics)
    by_id = {r.prediction_id: r for r in requests}
    for run in ("run-a", "run-b"):
        got = {int(label.prediction_id.rsplit("-", 1)[1]): label for label in labels if label.prediction_id[:5] == run}
        assert sorted(got) == sorted(labelled)  # the same subset for the same seed, whatever the run id
        for i, label in got.items():
            assert label.label == examples[i].target
            assert label.timestamp - by_id[label.prediction_id].timestamp == timedelta(seconds=labelled[i])
    assert len(labels) == 2 * len(labelled)


def test_requests_are_paced_at_the_rate(producer: KafkaProducer, created_topics: TopicSettings):
    config = ReplayConfig(rate=600.0)

    stats = Replayer(EventPublisher(seam_producer(producer), created_topics), sea(300), "paced", config).run()

    # 300 sends at 600/s: the first at once, the last 299/600 s = 0.498 s later.
    assert 0.49 <= stats.elapsed_s <= 1.0, stats
    assert stats.rate_achieved <= 612


def test_labels_wait_for_their_delay_or_go_out_at_the_end(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, producer: KafkaProducer
):
    publisher = EventPublisher(seam_producer(producer), created_topics)
    waited = Replayer(publisher, sea(50), "late", ReplayConfig(label_delay="fixed:1", wait_for_labels=True), run_id="w")
    stats = waited.run()
    assert stats.elapsed_s >= 1.0 and stats.labels_sent == 50
    started = time.monotonic()
    hurried = Replayer(publisher, sea(50), "late", ReplayConfig(label_delay="fixed:60"), run_id="h").run()
    assert time.monotonic() - started < 10 and hurried.labels_sent == 50

    sent_at = {}  # prediction id -> the request record's timestamp (set by the producer when it was sent)
    for record in read_all(kafka_settings, created_topics.scoring_requests, created_topics.stream_partitions):
        sent_at[decode_record(record, ScoringRequest).prediction_id] = record.timestamp
    lags = {"w": [], "h": []}
    for record in read_all(kafka_settings, created_topics.labels, created_topics.stream_partitions):
        label = decode_record(record, LabelEvent)
        lags[label.prediction_id[0]].append(record.timestamp - sent_at[label.prediction_id])
    assert len(lags["w"]) == len(lags["h"]) == 50
    assert min(lags["w"]) >= 990  # milliseconds: each label waited out its second
    assert max(lags["h"]) < 10_000  # sent when the stream ended, not 60 s later


def test_stop_ends_the_replay_with_the_labels_of_what_was_sent(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, producer: KafkaProducer
):
    replayer = Replayer(
        EventPublisher(seam_producer(producer), created_topics),
        sea(100_000),
        "stopped",
        ReplayConfig(rate=500.0, label_delay="fixed:60", label_fraction=0.5, seed=1),
    )
    results = []
    thread = threading.Thread(target=lambda: results.append(replayer.run()))
    thread.start()
    time.sleep(1.0)
    replayer.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()

    [stats] = results
    assert stats.stopped and 100 <= stats.requests_sent <= 1_000, stats
    assert stats.labels_sent + stats.labels_withheld == stats.requests_sent and stats.labels_pending == 0
    assert len(requests_on(kafka_settings, created_topics)) == stats.requests_sent
    assert len(labels_on(kafka_settings, created_topics)) == stats.labels_sent


def test_retrain_replay_command(kafka_settings: KafkaSettings, created_topics: TopicSettings):
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in created_topics.names().items()},
    }
    command = [sys.executable, "-m", "retrain.cli", "replay", "--model-id", "cli", "--examples", "500"]
    options = ["--label-fraction", "0.5", "--seed", "3", "--run-id", "cli-run", "--progress-every", "200"]
    result = subprocess.run(
        [*command, *options], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("replay cli-run: sea concepts 0->1->2, drifts at 166,333, 500 examples, seed 3")
    assert [line.split(",")[0] for line in lines[1:3]] == ["replay: 200 requests", "replay: 400 requests"]
    sampler = LabelSampler(0.5, ReplayConfig().delay, seed=3)
    labelled = sum(sampler.draw() is not None for _ in range(500))
    assert lines[-1].startswith(f"replay cli-run done: 500 requests, {labelled} labels sent, {500 - labelled} withheld")
    assert len(requests_on(kafka_settings, created_topics)) == 500
    assert len(labels_on(kafka_settings, created_topics)) == labelled

    bad = subprocess.run(
        [*command, "--label-delay", "soon"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "invalid label delay 'soon'" in bad.stderr
