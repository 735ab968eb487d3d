"""The detector service against a real broker: join, drift, one event per episode, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_detector
from retrain.producers.scored import delayed_shuffled_labels, sea_model, sea_stream
from retrain.schemas import DeadLetter, LabeledExample, LabelEvent, RetrainEvent, encode
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, Settings, TopicSettings
from tests.helpers.kafka_io import LABEL_WINDOW, make_producer, produce, read_all
from tests.helpers.streams import shifted_feature_predictions

DRIFT_AT = 10_000
DELAY_BOUND = 1_500  # the drift event comes within this many labeled examples of the drift


@pytest.fixture(scope="module")
def model():
    return sea_model()


class RunningDetector:
    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.loop = run_detector(settings, registry=self.registry, serve=False)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def wait_for(self, name: str, at_least: float, timeout_s: float = 120.0, **labels: str) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.value(name, **labels) >= at_least:
                return self.value(name, **labels)
            time.sleep(0.2)
        import faulthandler

        faulthandler.dump_traceback(all_threads=True)
        raise AssertionError(f"{name}{labels} stayed at {self.value(name, **labels)}, expected >= {at_least}")

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the detector did not stop within 30 s"


@pytest.fixture
def settings(kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str) -> Settings:
    return Settings(
        kafka=kafka_settings,
        topics=created_topics,
        broker=BrokerSettings(),
        detector=DetectorSettings(group_id=f"detector-{unique}", label_ttl_s=120, prediction_ttl_s=3_600),
    )


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[KafkaProducer]:
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    yield producer
    producer.close()


def test_abrupt_drift_gives_one_drift_event_and_bad_input_goes_to_dead_letters(
    model, settings: Settings, producer: KafkaProducer, kafka_settings: KafkaSettings
):
    # The performance trigger is switched off so that this test watches the drift detectors alone.
    settings = settings.model_copy(
        update={"detector": settings.detector.model_copy(update={"relative_drop": None, "cooldown_s": 10**9})}
    )
    stream = sea_stream(model, n=20_000, drift_at=DRIFT_AT, model_id="sea")
    labels = delayed_shuffled_labels(stream, LABEL_WINDOW)
    orphan = LabelEvent(prediction_id="never-predicted", model_id="sea", label=1, timestamp=stream[0].label.timestamp)
    producer.send(settings.topics.labels, key=b"sea", value=encode(orphan))
    garbage = {1_000: b"\xff\xfe garbage", 5_000: b'{"schema_version": 1, "prediction_id": "x"}', 15_000: b"[]"}
    produce(producer, settings.topics, stream, labels, garbage)

    detector = RunningDetector(settings)
    try:
        detector.wait_for("retrain_joins_total", 20_000, outcome="joined")
        detector.wait_for("retrain_dead_letters_total", 1, service="detector", reason="unmatched_label")
    finally:
        detector.stop()

    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, settings.topics.retrain_events, 1)]
    # One episode: fits on the 1,500, 3,750 and then 5,000 examples after the estimated change point (no model is
    # promoted here, so no refit is skipped as recovered).
    assert [event.reason.value for event in events] == ["drift", "drift", "drift"], events
    event = events[-1]
    assert [e.suggested_window.last_n for e in events] == [1_500, 3_750, 5_000]
    detected = {e.evidence.values["detected_at"] for e in events}
    change = {e.evidence.values["change_at"] for e in events}
    assert len(detected) == 1 and len(change) == 1  # the same episode
    assert DRIFT_AT < detected.pop() <= DRIFT_AT + DELAY_BOUND
    assert abs(change.pop() - DRIFT_AT) <= LABEL_WINDOW  # labels arrive shuffled within a window of 500
    assert set(event.evidence.detectors) <= {"ADWIN", "PageHinkley"} and event.evidence.detectors
    assert event.evidence.after > event.evidence.before
    assert event.evidence.position is not None and event.evidence.position.topic in (
        settings.topics.labels,
        settings.topics.predictions,
    )

    examples = read_all(kafka_settings, settings.topics.labeled_examples, settings.topics.stream_partitions)
    joined = [decode_record(r, LabeledExample) for r in examples]
    assert len(joined) == 20_000
    assert len({example.prediction_id for example in joined}) == 20_000

    letters = [decode_record(r, DeadLetter) for r in read_all(kafka_settings, settings.topics.dead_letters, 1)]
    reasons = sorted(letter.error_reason for letter in letters)
    assert reasons == ["invalid_utf8", "not_an_object", "unmatched_label", "validation"], reasons
    unmatched = next(letter for letter in letters if letter.error_reason == "unmatched_label")
    assert b"never-predicted" in unmatched.payload()


def test_labels_before_their_predictions_still_join(model, settings: Settings, producer, kafka_settings):
    stream = sea_stream(model, n=300, drift_at=None, model_id="early")
    for item in stream:  # every label first ...
        producer.send(settings.topics.labels, key=b"early", value=encode(item.label))
    producer.flush()
    for item in stream:  # ... then the predictions
        producer.send(settings.topics.predictions, key=b"early", value=encode(item.prediction))
    producer.flush()

    detector = RunningDetector(settings)
    try:
        detector.wait_for("retrain_joins_total", 300, outcome="joined")
    finally:
        detector.stop()

    examples = read_all(kafka_settings, settings.topics.labeled_examples, settings.topics.stream_partitions)
    joined = {decode_record(r, LabeledExample).prediction_id: decode_record(r, LabeledExample) for r in examples}
    assert len(joined) == 300
    first = joined["early-0"]
    assert first.label == stream[0].label.label and first.prediction == stream[0].prediction.prediction
    assert first.label_timestamp == stream[0].prediction.timestamp + timedelta(seconds=30)


def test_stationary_stream_of_50000_examples_gives_no_drift_event(
    model, kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, producer
):
    settings = Settings(
        kafka=kafka_settings,
        topics=created_topics,
        broker=BrokerSettings(),
        detector=DetectorSettings(group_id=f"detector-{unique}"),  # the defaults
    )
    stream = sea_stream(model, n=50_000, drift_at=None, model_id="steady", seed=5)
    produce(producer, created_topics, stream, delayed_shuffled_labels(stream, LABEL_WINDOW))

    detector = RunningDetector(settings)
    try:
        detector.wait_for("retrain_joins_total", 50_000, timeout_s=300, outcome="joined")
    finally:
        detector.stop()

    assert read_all(kafka_settings, created_topics.retrain_events, 1) == []
    assert detector.value("retrain_retrain_events_total", model_id="steady", reason="drift") == 0


def test_opt_in_feature_drift_needs_no_labels(settings: Settings, producer, kafka_settings: KafkaSettings):
    settings = settings.model_copy(
        update={"detector": settings.detector.model_copy(update={"feature_drift": True, "cooldown_s": 10**9})}
    )
    for prediction in shifted_feature_predictions(6_000, 3_000, model_id="unlabeled"):
        producer.send(settings.topics.predictions, key=b"unlabeled", value=encode(prediction))
    producer.flush()

    detector = RunningDetector(settings)
    try:
        detector.wait_for("retrain_retrain_events_total", 1, model_id="unlabeled", reason="drift")
        detector.wait_for(
            "retrain_records_consumed_total", 6_000, service="detector", topic=settings.topics.predictions
        )
    finally:
        detector.stop()

    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, settings.topics.retrain_events, 1)]
    assert [(event.reason.value, event.detector) for event in events] == [("drift", "ADWIN[x0]")]
    assert events[0].evidence.position is not None
    assert 3_000 <= events[0].evidence.position.offset < 3_200
