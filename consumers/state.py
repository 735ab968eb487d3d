"""The detector's changelog: one signed state snapshot per partition in a compacted topic (the Kafka side)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from producers import EventPublisher


class StateChangelog:
    """Writes a partition's latest snapshot (key: the partition number) and reads it back on assignment."""

    def __init__(self, publisher: EventPublisher, reader: KafkaConsumer, topic: str, timeout_s: float = 60.0) -> None:
        self.publisher = publisher  # the service's own: snapshots are flushed (and transacted) with its outputs
        self.reader = reader  # group-less: assigned one partition at a time
        self.topic = topic
        self.timeout_s = timeout_s

    def save(self, partition: int, snapshot: bytes) -> None:
        self.publisher.send(self.topic, str(partition).encode(), snapshot, partition=partition)

    def load(self, partition: int) -> bytes | None:
        """The partition's latest snapshot, or None when it has none; reads the partition to its end.

        Raises a KafkaError (the broker away) rather than guess: the caller retries, it never starts afresh.
        """
        tp = TopicPartition(self.topic, partition)
        self.reader.assign([tp])
        self.reader.seek_to_beginning(tp)
        end = self.reader.end_offsets([tp])[tp]
        latest: bytes | None = None
        deadline = time.monotonic() + self.timeout_s
        while self.reader.position(tp) < end:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(
                    f"could not read {self.topic}[{partition}] to offset {end} in {self.timeout_s:.0f}s"
                )
            for records in self.reader.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == str(partition).encode():
                        latest = record.value  # None: a tombstone
        return latest

    def close(self) -> None:
        self.reader.close()
