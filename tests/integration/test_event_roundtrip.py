"""Every event survives a trip through a real broker, on its own topic, keyed by model_id."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from retrain import kafka as seam
from retrain.consumers.decoding import dead_letter_for, decode_record
from retrain.kafka import read_at
from retrain.producers import EventPublisher, topic_for
from retrain.producers.publisher import DLQ_HEADER_PREFIX
from retrain.roundtrip import run_roundtrip, sample_events
from retrain.schemas import DeadLetter, EventDecodeError, LabelEvent, PredictionEvent, ScoringRequest
from retrain.settings import BrokerSettings, KafkaSettings, Settings, TopicSettings
from tests.helpers.kafka_io import make_producer, seam_producer


@pytest.fixture
def producer(kafka_settings: KafkaSettings):
    producer = make_producer(kafka_settings)
    yield producer
    producer.close()


@pytest.fixture
def consumer(kafka_settings: KafkaSettings):
    consumer = seam.make_consumer(kafka_settings, None)
    yield consumer
    consumer.close()


@pytest.mark.parametrize("index", range(5), ids=lambda i: type(sample_events()[i]).__name__)
def test_event_round_trips_through_its_topic(index, created_topics: TopicSettings, producer, consumer):
    event = sample_events(model_id="model-a")[index]
    metadata = EventPublisher(seam_producer(producer), created_topics).publish_and_wait(event)

    record = read_at(consumer, metadata.topic, metadata.partition, metadata.offset)

    assert metadata.topic == topic_for(event, created_topics)
    assert record.key == b"model-a"
    assert decode_record(record, type(event)) == event


def test_predictions_and_labels_of_a_model_share_a_partition_number(created_topics: TopicSettings, producer):
    publisher = EventPublisher(seam_producer(producer), created_topics)
    events = sample_events()
    prediction, label = events[0], events[1]
    partitions = {}
    for model_id in ("model-a", "model-b", "model-c", "model-d", "model-e", "model-f"):
        sent_prediction = publisher.publish_and_wait(prediction.model_copy(update={"model_id": model_id}))
        sent_label = publisher.publish_and_wait(label.model_copy(update={"model_id": model_id}))
        assert sent_prediction.partition == sent_label.partition, model_id
        partitions[model_id] = sent_prediction.partition
    # With 3 partitions and 6 keys, murmur2 spreads them: co-partitioning is not "everything in partition 0".
    assert len(set(partitions.values())) > 1, partitions


def test_a_scoring_request_goes_to_its_topic_in_the_partition_of_its_models_predictions(
    created_topics: TopicSettings, producer, consumer
):
    publisher = EventPublisher(seam_producer(producer), created_topics)
    prediction = sample_events(model_id="model-b")[0]
    request = ScoringRequest(
        prediction_id=prediction.prediction_id,
        model_id="model-b",
        features=prediction.features,
        timestamp=prediction.timestamp,
    )

    sent = publisher.publish_and_wait(request)
    predicted = publisher.publish_and_wait(prediction)
    record = read_at(consumer, sent.topic, sent.partition, sent.offset)

    assert topic_for(request, created_topics) == sent.topic == created_topics.scoring_requests
    assert record.key == b"model-b" and decode_record(record, ScoringRequest) == request
    assert sent.partition == predicted.partition


def test_malformed_record_becomes_a_dead_letter_with_connect_headers(
    created_topics: TopicSettings, producer: KafkaProducer, consumer
):
    garbage = b"\x00\xffnot json at all"
    sent = producer.send(created_topics.labels, key=b"model-a", value=garbage).get(timeout=30)
    record = read_at(consumer, sent.topic, sent.partition, sent.offset)
    with pytest.raises(EventDecodeError) as raised:
        decode_record(record, LabelEvent)

    letter = dead_letter_for(record, raised.value, service="tests")
    dead = EventPublisher(seam_producer(producer), created_topics).publish_and_wait(letter)
    back = read_at(consumer, dead.topic, dead.partition, dead.offset)
    headers = {name: value.decode() for name, value in back.headers}
    decoded = decode_record(back, DeadLetter)

    assert dead.topic == created_topics.dead_letters
    assert back.key == b"model-a"
    assert decoded.payload() == garbage
    assert decoded.error_reason == "invalid_utf8"
    assert headers[f"{DLQ_HEADER_PREFIX}topic"] == created_topics.labels
    assert headers[f"{DLQ_HEADER_PREFIX}partition"] == str(sent.partition)
    assert headers[f"{DLQ_HEADER_PREFIX}offset"] == str(sent.offset)
    assert headers[f"{DLQ_HEADER_PREFIX}exception.class.name"] == "retrain.schemas.codec.EventDecodeError"
    assert headers[f"{DLQ_HEADER_PREFIX}exception.message"].startswith("invalid LabelEvent: not UTF-8")


def test_foundation_demo_round_trips_every_event(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, capsys: pytest.CaptureFixture[str]
):
    settings = Settings(kafka=kafka_settings, topics=topic_settings, broker=BrokerSettings())
    lines: list[str] = []

    assert run_roundtrip(settings, say=lines.append) == 0

    assert sum(" ok" in line and line.startswith("round-trip:") for line in lines) == 5, lines
    assert any(line.startswith("dead letter: invalid_json") and line.endswith(" ok") for line in lines), lines
    assert lines[-1] == "roundtrip: all events round-tripped"


def test_a_prediction_is_not_a_label(created_topics: TopicSettings, producer, consumer):
    """A record of the wrong type on a topic is refused, not half-read."""
    prediction = sample_events()[0]
    assert isinstance(prediction, PredictionEvent)
    sent = producer.send(created_topics.labels, key=b"demo-model", value=prediction.model_dump_json().encode())
    metadata = sent.get(timeout=30)
    record = read_at(consumer, metadata.topic, metadata.partition, metadata.offset)
    with pytest.raises(EventDecodeError) as raised:
        decode_record(record, LabelEvent)
    assert raised.value.reason == "validation"
    assert "Extra inputs are not permitted" in str(raised.value)
