"""The contract between the consume loop and a service: what the loop drives (:class:`Service`), what a handler
emits into (:class:`Outputs`), and :class:`InvalidRecord` for a record it cannot use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from retrain.consumers.decoding import dead_letter_for
from retrain.kafka import Consumer, Record, TopicPartition
from retrain.producers import EventPublisher
from retrain.schemas import DeadLetter, Event


class InvalidRecord(ValueError):
    """A record that decodes but cannot be used (e.g. a regression label that is not a number)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Outputs:
    """What a service emits while handling a batch; sent at once, flushed before the commit."""

    def __init__(self, publisher: EventPublisher, service: str, on_dead_letter=None) -> None:
        self.publisher = publisher
        self.service = service
        self.on_dead_letter = on_dead_letter
        self.sent = 0

    def emit(self, event: Event) -> None:
        self.publisher.publish(event)
        self.sent += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        self.emit(letter)
        if self.on_dead_letter is not None:
            self.on_dead_letter(letter.error_reason)

    def dead_letter_record(self, record: Record, error: Exception, reason: str) -> None:
        self.dead_letter(dead_letter_for(record, error, self.service, reason))


class Service(Protocol):
    """What the loop drives. Optional hooks, called when a service has them: ``prepare_commit(offsets)`` before a
    commit's flush (state that goes out with the batch); ``outputs_written()`` once the batch's outputs are durable
    in Kafka (flushed, or its transaction committed) and before an at-least-once commit; ``committed(offsets)``
    after a commit."""

    name: str

    def handle(self, record: Record, out: Outputs) -> None: ...

    def after_batch(self, out: Outputs) -> None: ...

    def committable(self, partition: TopicPartition, position: int) -> int:
        """The offset that is safe to commit for ``partition`` given the consumer's ``position``."""
        ...

    def partitions_revoked(self, partitions: Iterable[TopicPartition]) -> None: ...

    def partitions_assigned(self, consumer: Consumer, partitions: Iterable[TopicPartition]) -> None: ...

    def close(self) -> None:
        """Release what the service owns besides the loop's consumer and producer."""
        ...
