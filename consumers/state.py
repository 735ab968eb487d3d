"""The detector's changelog: the signed state snapshot of each partition in a compacted topic (the Kafka side).

The record layout (one record, or chunks and a manifest when a snapshot is large) is
:mod:`retrain.decisions.checkpoint`'s.
"""

from __future__ import annotations

from retrain.consumers.changelog import ChangelogAssembler, changelog_records
from retrain.kafka import Consumer, TopicPartition, read_partitions_to_end
from retrain.producers import EventPublisher

# Kafka's default limit on a record (broker message.max.bytes, producer max_request_size) is 1 MiB: stay well
# under it, whatever the broker's settings.
MAX_RECORD_BYTES = 512 * 1024


class StateChangelog:
    """Writes a partition's latest snapshot (key: the partition number) and reads it back on assignment."""

    def __init__(
        self,
        publisher: EventPublisher,
        reader: Consumer,
        topic: str,
        timeout_s: float = 60.0,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.publisher = publisher  # the service's own: snapshots are flushed (and transacted) with its outputs
        self.reader = reader  # group-less: assigned one partition at a time
        self.topic = topic
        self.timeout_s = timeout_s
        self.max_record_bytes = max_record_bytes
        self._chunk_keys: dict[int, int] = {}  # chunk keys each partition's last snapshot (written or read) used

    def save(self, partition: int, snapshot: bytes) -> None:
        records = changelog_records(partition, snapshot, self.max_record_bytes, self._chunk_keys.get(partition, 0))
        for key, value in records:
            self.publisher.send(self.topic, key, value, partition=partition)
        self._chunk_keys[partition] = sum(1 for key, value in records if value is not None and b"." in key)

    def load(self, partition: int) -> bytes | None:
        """The partition's latest snapshot, or None when it has none; reads the partition to its end.

        Raises a :class:`~retrain.kafka.KafkaFailure` (the broker away) rather than guess: the caller retries, it
        never starts afresh.
        Raises :class:`~retrain.decisions.checkpoint.SnapshotRefused` when the latest snapshot's chunks are not
        all there.
        """
        assembler = ChangelogAssembler(partition)
        where = [TopicPartition(self.topic, partition)]
        for record in read_partitions_to_end(self.reader, where, self.timeout_s, past_end=True):
            assembler.add(record.key, record.value)
        self._chunk_keys[partition] = assembler.chunk_keys
        return assembler.latest()

    def close(self) -> None:
        self.reader.close()
