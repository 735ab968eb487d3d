"""Publish events to their topics, keyed by ``model_id``; dead letters carry Kafka Connect's error headers."""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from retrain.settings import TopicSettings
from schemas import (
    DeadLetter,
    Event,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    ScoringRequest,
    encode,
)

_TOPIC_ROLE: dict[type[Event], str] = {
    ScoringRequest: "scoring_requests",
    PredictionEvent: "predictions",
    LabelEvent: "labels",
    LabeledExample: "labeled_examples",
    RetrainEvent: "retrain_events",
    ModelUpdatedEvent: "model_updates",
    DeadLetter: "dead_letters",
}

# Kafka Connect's dead-letter header names, so existing DLQ tooling can read ours.
DLQ_HEADER_PREFIX = "__connect.errors."


def topic_for(event: Event, topics: TopicSettings) -> str:
    return topics.names()[_TOPIC_ROLE[type(event)]]


def key_for(event: Event) -> bytes | None:
    if isinstance(event, DeadLetter):
        return event.original_key()
    return event.model_id.encode()  # type: ignore[attr-defined]


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    return [
        (f"{DLQ_HEADER_PREFIX}topic", letter.source_topic.encode()),
        (f"{DLQ_HEADER_PREFIX}partition", str(letter.source_partition).encode()),
        (f"{DLQ_HEADER_PREFIX}offset", str(letter.source_offset).encode()),
        (f"{DLQ_HEADER_PREFIX}exception.class.name", letter.error_class.encode()),
        (f"{DLQ_HEADER_PREFIX}exception.message", letter.error_message.encode()),
        (f"{DLQ_HEADER_PREFIX}reason", letter.error_reason.encode()),
        (f"{DLQ_HEADER_PREFIX}service", letter.service.encode()),
    ]


class PublishFailed(KafkaError):
    """Records sent since the last flush were not all written: whatever consumed their inputs must not commit."""

    retriable = True


class EventPublisher:
    """Sends events to the topic of their type. The caller flushes before committing its input offsets.

    :meth:`flush` raises :class:`PublishFailed` when a record sent since the previous flush was not acknowledged
    (kafka-python's ``flush`` itself returns quietly when a record's delivery failed).
    """

    def __init__(self, producer: KafkaProducer, topics: TopicSettings) -> None:
        self.producer = producer
        self.topics = topics
        self._unflushed: list[FutureRecordMetadata] = []

    def publish(self, event: Event, *, topic: str | None = None) -> FutureRecordMetadata:
        headers = dead_letter_headers(event) if isinstance(event, DeadLetter) else None
        return self.send(topic or topic_for(event, self.topics), key_for(event), encode(event), headers)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers=None, partition: int | None = None
    ) -> FutureRecordMetadata:
        future = self.producer.send(topic, key=key, value=value, headers=headers, partition=partition)
        self._unflushed.append(future)
        return future

    def flush(self, timeout_s: float | None = None) -> None:
        sent, self._unflushed = self._unflushed, []
        self.producer.flush(timeout=timeout_s)
        failed = [future.exception for future in sent if future.failed()]
        if failed:
            raise PublishFailed(f"{len(failed)} of {len(sent)} records were not written; the first: {failed[0]!r}")

    def forget(self) -> None:
        """Drop the records sent since the last flush from the check (their transaction was aborted)."""
        self._unflushed = []
