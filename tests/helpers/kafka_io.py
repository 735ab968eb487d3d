"""kafka-python's own clients for the tests' side of a conversation: writing inputs and reading what the services
wrote. An independent reference client, whichever client (RETRAIN_KAFKA_CLIENT) the services under test use."""

import time

from kafka import KafkaProducer, TopicPartition

from retrain.kafka.kafka_python import raw_admin as make_admin
from retrain.kafka.kafka_python import raw_consumer as make_consumer
from retrain.kafka.kafka_python import raw_producer as make_producer
from retrain.producers.scored import Scored, delayed_shuffled_labels
from retrain.schemas import LabelEvent, ScoringRequest, encode
from retrain.settings import KafkaSettings, TopicSettings

__all__ = ["make_admin", "make_consumer", "make_producer"]


def topic_admin(admin):
    """The seam's admin over a raw kafka-python admin client (what ``retrain.topics.ensure_topics`` takes)."""
    from retrain.kafka.kafka_python import KafkaPythonAdmin

    return KafkaPythonAdmin(admin)


def seam_producer(producer):
    """The seam's producer over a raw kafka-python producer (what ``EventPublisher`` takes)."""
    from retrain.kafka.kafka_python import KafkaPythonProducer

    return KafkaPythonProducer(producer)


LABEL_WINDOW = 500  # labels arrive one window late, shuffled within the window


def produce(
    producer: KafkaProducer,
    topics: TopicSettings,
    stream: list[Scored],
    labels: list[LabelEvent],
    garbage: dict[int, bytes] | None = None,
) -> None:
    """Predictions in order; each window's labels (shuffled) after the next window's predictions."""
    garbage = garbage or {}
    for start in range(0, len(stream) + LABEL_WINDOW, LABEL_WINDOW):
        for item in stream[start : start + LABEL_WINDOW]:
            producer.send(topics.predictions, key=item.prediction.model_id.encode(), value=encode(item.prediction))
        for label in labels[start - LABEL_WINDOW : start] if start else []:
            producer.send(topics.labels, key=label.model_id.encode(), value=encode(label))
        if start in garbage:
            producer.send(topics.labels, key=b"sea", value=garbage[start])
    producer.flush()


def read_all(kafka_settings: KafkaSettings, topic: str, partitions: int) -> list:
    consumer = make_consumer(kafka_settings, None)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(assigned)
        records = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in assigned) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def written(consumer, partitions: list[TopicPartition]) -> int:
    return sum(consumer.end_offsets(partitions).values())


def send_all(producer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()


def produce_requests(producer, topics: TopicSettings, stream: list[Scored]) -> None:
    """Scoring requests in order; each window's labels (shuffled) after the next window's requests."""
    labels = delayed_shuffled_labels(stream, LABEL_WINDOW)
    for start in range(0, len(stream) + LABEL_WINDOW, LABEL_WINDOW):
        for item in stream[start : start + LABEL_WINDOW]:
            p = item.prediction
            request = ScoringRequest(
                prediction_id=p.prediction_id, model_id=p.model_id, features=p.features, timestamp=p.timestamp
            )
            producer.send(topics.scoring_requests, key=p.model_id.encode(), value=encode(request))
        for label in labels[start - LABEL_WINDOW : start] if start else []:
            producer.send(topics.labels, key=label.model_id.encode(), value=encode(label))
    producer.flush()
