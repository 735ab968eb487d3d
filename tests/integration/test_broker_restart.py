"""The broker stops and starts again in the middle of a stream: the detector recovers by itself, nothing is lost.

This test runs a broker of its own (the session's broker serves the other tests), stops it with a controlled
shutdown while the detector is joining and the producer is sending, keeps it down for a few seconds, and
starts it again on the same data. Neither the detector process nor the producer is restarted.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import TopicPartition

from retrain.clients import make_admin, make_consumer, make_producer
from retrain.localkafka import LocalBroker
from retrain.settings import BrokerSettings, KafkaSettings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics
from tests.conftest import REPO_ROOT
from tests.integration.conftest import TEST_BROKER_PORT
from tests.integration.streams import delayed_shuffled_labels, sea_model, sea_stream
from tests.integration.test_crash_recovery import Detector, wait_all_joined, written
from tests.integration.test_detector import LABEL_WINDOW, produce, read_all

pytestmark = pytest.mark.kafka

MODELS = 3
PER_MODEL = 6_000
DOWN_S = 5


@pytest.fixture
def own_broker():
    port = TEST_BROKER_PORT + 50
    broker = LocalBroker(
        BrokerSettings(
            port=port,
            cache_dir=REPO_ROOT / ".cache" / "kafka",
            data_dir=REPO_ROOT / ".cache" / "kafka" / f"test-data-{port}",
        )
    )
    broker.start(fresh=True)
    try:
        yield broker
    finally:
        broker.stop()


def test_the_detector_rides_out_a_broker_restart(own_broker: LocalBroker, topic_settings: TopicSettings, unique: str):
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap)
    admin = make_admin(kafka)
    try:
        assert ensure_topics(admin, pipeline_topics(topic_settings)).ok
    finally:
        admin.close()
    model = sea_model()
    streams = [sea_stream(model, n=PER_MODEL, drift_at=None, model_id=f"br{m}", seed=80 + m) for m in range(MODELS)]
    stream = [s[i] for i in range(PER_MODEL) for s in streams]
    total = len(stream)
    out_partitions = [
        TopicPartition(topic_settings.labeled_examples, p) for p in range(topic_settings.stream_partitions)
    ]

    detector = Detector(kafka, topic_settings, f"detector-{unique}")
    producer = make_producer(kafka, linger_ms=20, batch_size=64 * 1024)
    producing = threading.Thread(
        target=produce, args=(producer, topic_settings, stream, delayed_shuffled_labels(stream, LABEL_WINDOW))
    )
    watcher = make_consumer(kafka, None)
    try:
        detector.start()
        producing.start()
        deadline = time.monotonic() + 120
        while written(watcher, out_partitions) < total // 3:
            assert time.monotonic() < deadline, "the detector did not get going"
            time.sleep(0.05)
        watcher.close()
        assert own_broker.stop()
        stopped = time.monotonic()
        time.sleep(DOWN_S)
        assert detector.process.poll() is None, "the detector died with the broker"
        own_broker.start()
        restarted = time.monotonic()

        producing.join(timeout=180)
        assert not producing.is_alive(), "the producer did not finish after the restart"
        ids = wait_all_joined(kafka, topic_settings, total, [detector], timeout_s=180)
        recovered = time.monotonic()
        assert detector.terminate() == 0
    finally:
        watcher.close()
        producer.close()
        if detector.process is not None and detector.process.poll() is None:
            detector.process.kill()

    assert set(ids) == {item.prediction.prediction_id for item in stream}
    duplicates = sum(ids.values()) - total
    print(
        f"\nbroker down {restarted - stopped:.0f} s; all {total:,} joined {recovered - restarted:.0f} s after the "
        f"restart; {duplicates:,} joined twice"
    )
    assert duplicates <= 1_000  # one uncommitted poll at most
    # No record failed in the handling (that would be a processing_error dead letter). kafka-python itself may log
    # errors with tracebacks while the broker is away: the process living on and exiting 0 is what counts.
    assert read_all(kafka, topic_settings.dead_letters, 1) == []
