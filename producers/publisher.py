"""Publish events to their topics, keyed by ``model_id``; dead letters carry Kafka Connect's error headers."""

from __future__ import annotations

from retrain.kafka import Delivered, Headers, OnDelivery, Producer, send_and_wait
from retrain.schemas import (
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
from retrain.settings import TopicSettings

TOPIC_ROLE: dict[type[Event], str] = {
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
    return topics.names()[TOPIC_ROLE[type(event)]]


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


class EventPublisher:
    """Sends events to the topic of their type. The caller flushes before committing its input offsets.

    :meth:`flush` raises :class:`retrain.kafka.PublishFailed` when a record sent since the previous flush was not
    written.
    """

    def __init__(self, producer: Producer, topics: TopicSettings) -> None:
        self.producer = producer
        self.topics = topics

    def publish(self, event: Event, *, topic: str | None = None, on_delivery: OnDelivery | None = None) -> None:
        headers = dead_letter_headers(event) if isinstance(event, DeadLetter) else None
        self.send(
            topic or topic_for(event, self.topics), key_for(event), encode(event), headers, on_delivery=on_delivery
        )

    def publish_and_wait(self, event: Event, timeout_s: float = 30.0) -> Delivered:
        """Publish one event and wait until the broker has it (commands, not services: they batch)."""
        headers = dead_letter_headers(event) if isinstance(event, DeadLetter) else None
        return send_and_wait(
            self.producer, topic_for(event, self.topics), key_for(event), encode(event), headers, timeout_s
        )

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        self.producer.send(topic, key, value, headers, partition, on_delivery)

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout_s)

    def forget(self) -> None:
        """Drop the records sent since the last flush from the check (their transaction was aborted)."""
        self.producer.forget_unflushed()
