"""``retrain roundtrip``: a broker, the topics, and one event of each kind through Kafka and back.

Each event is published to its pipeline topic, read back from the exact partition and offset the broker
acknowledged, decoded and compared with what was sent. A malformed record goes the dead-letter way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

from retrain.consumers.decoding import dead_letter_for, decode_record
from retrain.kafka import make_admin, make_consumer, make_producer, read_at, send_and_wait
from retrain.localkafka import LocalBroker, metadata_ok
from retrain.producers import EventPublisher
from retrain.producers.publisher import DLQ_HEADER_PREFIX
from retrain.schemas import (
    DeadLetter,
    Event,
    EventDecodeError,
    Evidence,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    TrainingWindow,
    UpdateOutcome,
)
from retrain.settings import Settings
from retrain.topics import ensure_topics, pipeline_topics

Say = Callable[[str], None]


def sample_events(model_id: str = "demo-model") -> list[Event]:
    """One event of each kind, as the pipeline would produce them for one prediction's life."""
    now = datetime.now(UTC)
    prediction_id = uuid4().hex
    features = {"nswprice": 0.056, "nswdemand": 0.439, "vicprice": 0.003, "period": 0.5}
    prediction = PredictionEvent(
        prediction_id=prediction_id,
        model_id=model_id,
        model_version=1,
        features=features,
        prediction="UP",
        timestamp=now,
    )
    label = LabelEvent(prediction_id=prediction_id, model_id=model_id, label="DOWN", timestamp=now)
    example = LabeledExample(
        prediction_id=prediction_id,
        model_id=model_id,
        model_version=1,
        features=features,
        prediction="UP",
        label="DOWN",
        prediction_timestamp=now,
        label_timestamp=now,
    )
    retrain = RetrainEvent(
        model_id=model_id,
        reason=RetrainReason.DRIFT,
        detector="ADWIN",
        model_version=1,
        evidence=Evidence(metric="error_rate", before=0.12, after=0.41, window_width=180, detectors=["ADWIN"]),
        suggested_window=TrainingWindow(last_n=180),
    )
    updated = ModelUpdatedEvent(
        model_id=model_id,
        version=2,
        previous_version=1,
        promoted=True,
        outcome=UpdateOutcome.PROMOTED,
        metrics={"challenger_accuracy": 0.81, "champion_accuracy": 0.62},
        n_samples=180,
        artifact_uri=f"file:///var/lib/retrain/models/{model_id}/2/model.skops",
        sha256="0" * 64,
        trigger_event_id=retrain.event_id,
    )
    return [prediction, label, example, retrain, updated]


def ensure_broker(settings: Settings, say: Say) -> LocalBroker | None:
    """Start the project's broker when nothing answers at the configured bootstrap; return it if started."""
    first = settings.kafka.bootstrap_list[0]
    if metadata_ok(first):
        say(f"broker: reachable at {first}")
        return None
    broker = LocalBroker(settings.broker)
    say(f"broker: nothing answers at {first}; starting the local Kafka {settings.broker.kafka_version} broker")
    pid = broker.start()
    say(f"broker: running at {broker.bootstrap} (pid {pid}, log {broker.log_file})")
    return broker


def run_roundtrip(settings: Settings, say: Say = print, *, keep_broker: bool = False) -> int:
    started = ensure_broker(settings, say)
    kafka = settings.kafka
    if started is not None:
        kafka = kafka.model_copy(update={"bootstrap_servers": started.bootstrap})
    try:
        admin = make_admin(kafka)
        try:
            report = ensure_topics(admin, pipeline_topics(settings.topics))
        finally:
            admin.close()
        say(f"topics: created {report.created or 'none'}; already there {report.existing or 'none'}")
        for problem in report.problems:
            say(f"topics: PROBLEM {problem}")
        if not report.ok:
            return 1
        return _round_trip(settings, kafka, say)
    finally:
        if started is not None and not keep_broker:
            started.stop()
            say("broker: stopped (use --keep-broker to leave it running)")


def _round_trip(settings: Settings, kafka, say: Say) -> int:
    producer = make_producer(kafka)
    consumer = make_consumer(kafka, None)
    publisher = EventPublisher(producer, settings.topics)
    failures = 0
    try:
        for event in sample_events():
            metadata = publisher.publish_and_wait(event)
            record = read_at(consumer, metadata.topic, metadata.partition, metadata.offset)
            same = decode_record(record, type(event)) == event
            failures += not same
            say(
                f"round-trip: {type(event).__name__:<18} -> {metadata.topic}[{metadata.partition}]"
                f"@{metadata.offset} key={record.key.decode()} {'ok' if same else 'MISMATCH'}"
            )
        garbage = b'{"prediction_id": "p-1", "features": {"x": NaN}'
        bad = send_and_wait(producer, settings.topics.predictions, b"demo-model", garbage)
        bad_record = read_at(consumer, bad.topic, bad.partition, bad.offset)
        try:
            decode_record(bad_record, PredictionEvent)
            say("dead letter: the malformed record was accepted: MISMATCH")
            failures += 1
        except EventDecodeError as error:
            letter = dead_letter_for(bad_record, error, service="demo")
            sent = publisher.publish_and_wait(letter)
            back = read_at(consumer, sent.topic, sent.partition, sent.offset)
            headers = dict(back.headers)
            same = decode_record(back, DeadLetter) == letter and letter.payload() == garbage
            failures += not same
            say(
                f"dead letter: {error.reason} -> {sent.topic}[{sent.partition}]@{sent.offset} "
                f"({DLQ_HEADER_PREFIX}exception.message={headers[DLQ_HEADER_PREFIX + 'exception.message'].decode()!r})"
                f" {'ok' if same else 'MISMATCH'}"
            )
    finally:
        consumer.close()
        producer.close()
    say(
        "roundtrip: all events round-tripped" if failures == 0 else f"roundtrip: {failures} event(s) did not round-trip"
    )
    return 0 if failures == 0 else 1
