"""The detector's on-disk state store (the default, RETRAIN_DETECTOR_STATE_STORE=rocksdb) against a real broker.

- kill -9 with more than 100,000 predictions pending (labels hours late in event time): the restarted detector
  reads on from where its store ends, not from the oldest pending record, and joins every label;
- a deleted or corrupted local store is rebuilt from the changelog topic, and nothing is lost.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from prometheus_client import CollectorRegistry

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_detector
from retrain.kafka import FatalFailure
from retrain.schemas import LabeledExample
from retrain.settings import DetectorSettings, KafkaSettings, Settings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics
from tests.helpers.kafka_io import make_consumer, make_producer, read_all, send_all, topic_admin
from tests.helpers.processes import Detector, sample, scrape, wait_all_joined
from tests.helpers.running import RunningService
from tests.helpers.state_records import label_bytes, prediction_bytes

pytestmark = pytest.mark.kafka


def committed(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> int:
    reader = make_consumer(kafka, group)
    try:
        return sum(reader.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))
    finally:
        reader.close()


def wait_for(condition, what: str, timeout_s: float, detector: Detector | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if detector is not None and not detector.running:
            raise AssertionError(f"the detector exited while waiting for {what}:\n{detector.output()[-3_000:]}")
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.5)


def consumed(detector: Detector, topic: str) -> float:
    try:
        text = scrape(detector.metrics_port)
    except OSError:  # not serving its metrics yet
        return 0.0
    return sample(text, f'retrain_records_consumed_total{{service="detector",topic="{topic}"}}') or 0.0


@pytest.mark.clients("kafka-python")
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_with_120000_pending_resumes_from_the_store(
    kafka_settings: KafkaSettings,
    admin: KafkaAdminClient,
    topic_settings: TopicSettings,
    unique: str,
    tmp_path: Path,
    guarantee: str,
):
    pending = 120_000
    topics = topic_settings
    assert ensure_topics(topic_admin(admin), pipeline_topics(topics)).ok
    group = f"detector-{unique}"
    detector = Detector(
        kafka_settings,
        topics,
        group,
        RETRAIN_KAFKA_PROCESSING_GUARANTEE=guarantee,
        RETRAIN_STATE_DIR=str(tmp_path / "state"),
    )
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=512 * 1024)
    rng = random.Random(14)
    labeled = rng.sample(range(pending), pending // 5)  # a fifth come back, in any order: the others still wait
    labels = [label_bytes(i) for i in labeled]
    try:
        detector.start()
        send_all(producer, topics.predictions, [prediction_bytes(i) for i in range(pending)])
        wait_for(
            lambda: committed(kafka_settings, group, topics.predictions, topics.stream_partitions) >= pending,
            "the predictions to be committed (in the store, not waiting for their labels)",
            300,
            detector,
        )
        half = len(labels) // 2
        send_all(producer, topics.labels, labels[:half])
        time.sleep(1.0)  # the detector is joining the first half when it is killed
        detector.kill()

        restarted = time.monotonic()
        detector.start()
        send_all(producer, topics.labels, labels[half:])
        wait_for(lambda: consumed(detector, topics.labels) > 0, "the first label after the restart", 120, detector)
        first_label_s = time.monotonic() - restarted
        # Under exactly_once, read committed records only (the killed instance's open transaction is aborted).
        reading = kafka_settings.model_copy(update={"processing_guarantee": guarantee})
        ids = wait_all_joined(reading, topics, len(labels), [detector], timeout_s=400)
        predictions_read_again = consumed(detector, topics.predictions)
        still_pending = sample(scrape(detector.metrics_port), 'retrain_join_pending{side="prediction"}')
        assert detector.terminate() == 0
    finally:
        producer.close()
        detector.kill_if_running()

    duplicates = sum(ids.values()) - len(labels)
    print(
        f"\n{guarantee}: killed with {pending:,} predictions pending; first label read {first_label_s:.1f} s after "
        f"the restart; {predictions_read_again:,.0f} predictions read again; {duplicates} joined twice"
    )
    assert set(ids) == {f"p-{i}" for i in labeled}
    assert still_pending == pending - len(labels)
    # The store held every prediction: the restart read none of them again (memory mode: all 120,000).
    assert predictions_read_again == 0
    if guarantee == "exactly_once":
        assert duplicates == 0
    else:
        assert duplicates <= 2_000  # the labels of the killed instance's uncommitted batches
    assert read_all(kafka_settings, topics.dead_letters, 1) == []


def _settings(kafka: KafkaSettings, topics: TopicSettings, unique: str, state_dir: Path) -> Settings:
    return Settings(
        kafka=kafka,
        topics=topics,
        detector=DetectorSettings(group_id=f"detector-{unique}", state_dir=state_dir),
    )


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_a_lost_or_corrupt_store_is_rebuilt_from_the_changelog(
    kafka_settings: KafkaSettings,
    created_topics: TopicSettings,
    unique: str,
    tmp_path: Path,
    damage: str,
):
    count = 3_000
    settings = _settings(kafka_settings, created_topics, unique, tmp_path / "state")
    producer = make_producer(kafka_settings, linger_ms=5)
    try:
        first = RunningService(run_detector, settings)
        send_all(producer, created_topics.predictions, [prediction_bytes(i) for i in range(count)])
        first.wait_for("retrain_join_pending", count, side="prediction")
        send_all(producer, created_topics.labels, [label_bytes(i) for i in range(0, count, 3)])  # a third joins
        first.wait_for("retrain_joins_total", count // 3, outcome="joined")
        first.stop()

        stores = tmp_path / "state" / settings.detector.group_id
        damaged = sorted(p for p in stores.iterdir() if p.is_dir())
        assert damaged  # the partitions that had records (the models hash to some of them)
        for store in damaged:
            if damage == "deleted":
                shutil.rmtree(store)
            else:
                for name in store.iterdir():
                    if name.name.startswith(("CURRENT", "MANIFEST")):
                        name.write_bytes(b"not a rocksdb file\n")

        second = RunningService(run_detector, settings)
        send_all(producer, created_topics.labels, [label_bytes(i) for i in range(count) if i % 3])
        second.wait_for("retrain_joins_total", count - count // 3, outcome="joined")
        rebuilt = second.value("retrain_state_store_rebuilds_total", reason="unreadable")
        read_back = second.value("retrain_state_restore_records_total")
        second.stop()
    finally:
        producer.close()

    examples = [decode_record(r, LabeledExample) for r in read_all(kafka_settings, created_topics.labeled_examples, 3)]
    ids = Counter(e.prediction_id for e in examples)
    assert set(ids) == {f"p-{i}" for i in range(count)} and max(ids.values()) == 1
    assert read_all(kafka_settings, created_topics.dead_letters, 1) == []
    assert rebuilt == (len(damaged) if damage == "corrupted" else 0)
    assert read_back >= count - count // 3  # the pending predictions came back from the changelog


def test_a_changelog_written_by_another_group_is_refused(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path
):
    """Two detector groups sharing one changelog topic would merge each other's joins: the second one stops."""
    producer = make_producer(kafka_settings, linger_ms=5)
    try:
        first = RunningService(run_detector, _settings(kafka_settings, created_topics, f"{unique}-a", tmp_path / "a"))
        send_all(producer, created_topics.predictions, [prediction_bytes(i) for i in range(50)])
        first.wait_for("retrain_join_pending", 50, side="prediction")
        first.stop()
    finally:
        producer.close()
    second = run_detector(
        _settings(kafka_settings, created_topics, f"{unique}-b", tmp_path / "b"),
        registry=CollectorRegistry(),
        serve=False,
    )
    stopper = threading.Timer(120, second.stop)  # were it not refused, the loop would run on
    stopper.start()
    try:
        with pytest.raises(FatalFailure, match="each detector group needs a changelog topic of its own"):
            second.run()
    finally:
        stopper.cancel()
