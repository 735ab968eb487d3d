"""What the rest of the code knows of a Kafka client: records, partitions and the consumer/producer protocols.

Nothing outside :mod:`retrain.kafka` imports a Kafka client library; services, the consume loop, the publisher
and the state code talk to these protocols, and :func:`retrain.kafka.make_consumer` and friends pick the
adapter (kafka-python or confluent-kafka) from ``RETRAIN_KAFKA_CLIENT``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


Headers = list[tuple[str, bytes]]
# Told of each record's fate on the producer's terms: (error or None, partition, offset); -1s when it failed.
OnDelivery = Callable[[Exception | None, int, int], None]


@dataclass(slots=True)
class Record:
    """One consumed record. ``timestamp`` is milliseconds since the epoch, -1 when the record has none."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1
    headers: Headers = field(default_factory=list)


class RebalanceListener(Protocol):
    """Told of rebalances on the thread that calls :meth:`Consumer.poll`, before that poll's records."""

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None: ...

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None: ...


class Consumer(Protocol):
    """A consumer that commits only when told to (offsets are the next record to read, as Kafka stores them)."""

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        """Join the group with the range assignor, so co-partitioned topics meet in one member."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> list[Record]: ...

    def partitions_for_topic(self, topic: str) -> set[int]:
        """The topic's partitions as the client's metadata knows them (empty: not known, or no such topic)."""
        ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def position(self, partition: TopicPartition) -> int:
        """The next offset to fetch; a wait for the broker only while the client does not know it yet."""
        ...

    def committed(self, partition: TopicPartition) -> int | None: ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None: ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def paused(self) -> set[TopicPartition]: ...

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    def offsets_for_times(self, times_ms: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """The earliest offset whose timestamp is at or after the time, None where there is none."""
        ...

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end as last seen by the fetcher, without a request (None: not known yet)."""
        ...

    def group_metadata(self) -> object: ...

    def close(self) -> None:
        """Leave the group without committing."""
        ...


class Producer(Protocol):
    """An idempotent producer (acks=all), murmur2-partitioned like the Java client, transactional when asked."""

    @property
    def transactional(self) -> bool: ...

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        """Queue the record; ``on_delivery`` is called once it is written or has failed (on a client thread)."""
        ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every record sent so far; raises :class:`~retrain.kafka.errors.PublishFailed` if any failed."""
        ...

    def forget_unflushed(self) -> None:
        """Drop the records sent since the last flush from the flush's check (their transaction was aborted)."""
        ...

    def init_transactions(self) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], consumer: Consumer) -> None: ...

    def commit_transaction(self) -> None: ...

    def abort_transaction(self) -> None: ...

    def has_fatal_error(self) -> bool:
        """The transaction state cannot be recovered by an abort: the producer must be replaced."""
        ...

    def close(self, timeout_s: float | None = None) -> None: ...
