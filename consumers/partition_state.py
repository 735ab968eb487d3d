"""The state of a service's partitions: a local store each, backed by a compacted changelog topic (the Kafka side).

One place owns a partition's state: :meth:`PartitionStates.open` opens its local store (rebuilt empty when it is
unreadable) and catches it up from the changelog, from the position the store recorded; :meth:`stage` sends a
batch's changes to the changelog with the service's outputs (in its transaction under ``exactly_once``);
:meth:`written`, once the outputs and the changelog are durable in Kafka, writes the batch locally with the
changelog position it reached; :meth:`close` (a revoke, a rewind) drops what was staged and not written.
A store that Kafka holds more of than the local copy (a crash after the changelog was written, a partition
that was away on another instance) is caught up; one that cannot be trusted is rebuilt from the changelog.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from retrain.consumers.metrics import DetectorMetrics
from retrain.kafka import Consumer, RetriableFailure, TopicPartition
from retrain.producers import EventPublisher
from retrain.state.join import INDEX_PREFIXES, index_keys
from retrain.state.store import PartitionStore, StoreUnusable

log = logging.getLogger(__name__)

APPLY_CHUNK = 10_000  # changelog records written to the local store per write batch during a restore


class PartitionStates:
    """Per-partition stores under ``root`` (``<root>/<partition>``), their changelog ``topic`` (co-partitioned)."""

    def __init__(
        self,
        root: Path,
        publisher: EventPublisher,
        reader: Consumer,
        topic: str,
        metrics: DetectorMetrics | None = None,
        slice_s: float = 60.0,
        owner: str | None = None,
    ) -> None:
        self.root = root
        # The consumer group whose state this is: a changelog written by another group is refused, not merged.
        self.owner = owner
        self.publisher = publisher  # the service's own: changelog records go out with its outputs
        self.reader = reader  # group-less, assigned one changelog partition at a time for a restore
        self.topic = topic
        self.metrics = metrics or DetectorMetrics(CollectorRegistry())  # the service hands its own
        # A restore reads for at most this long, then lets the loop poll (the group would drop a member that does
        # not poll within max.poll.interval.ms) and goes on from where it got on the next try.
        self.slice_s = slice_s
        self.stores: dict[int, PartitionStore] = {}
        # partition -> (changelog position after its staged batch's records, the batch's changes)
        self._positions: dict[int, int] = {}
        self._changes: dict[int, list[tuple[bytes, bytes | None]]] = {}

    def open(self, partition: int) -> PartitionStore:
        """The partition's store, caught up with its changelog. Raises a KafkaFailure when the changelog cannot
        be read (nothing is opened then: the caller tries again)."""
        started = time.monotonic()
        store = PartitionStore(self.root / str(partition), index_keys, INDEX_PREFIXES)
        if store.rebuilt_reason is not None:
            self.metrics.store_rebuilds.labels(store.rebuilt_reason.split(" ")[0]).inc()
        try:
            read = self._catch_up(partition, store)
            written_by = store.meta.get("group")
            if self.owner is not None and written_by not in (None, self.owner):
                raise StoreUnusable(
                    f"{self.topic}[{partition}] holds the state of consumer group {written_by!r}, not of "
                    f"{self.owner!r}: each detector group needs a changelog topic of its own "
                    "(RETRAIN_TOPIC_DETECTOR_CHANGELOG)"
                )
        except BaseException:
            store.close()
            raise
        took = time.monotonic() - started
        self.metrics.store_restore_seconds.labels(str(partition)).set(took)
        self.metrics.store_restored_records.inc(read)
        log.info(
            "partition %d: state store opened in %.1f s (%d changelog records read; it holds the changelog up to "
            "offset %d)",
            partition,
            took,
            read,
            store.changelog_position,
        )
        self.stores[partition] = store
        return store

    def _catch_up(self, partition: int, store: PartitionStore) -> int:
        """Reads the changelog from the store's position to its end into the store; returns the records read."""
        where = TopicPartition(self.topic, partition)
        self.reader.assign([where])
        end = self.reader.end_offsets([where])[where]
        start = store.changelog_position
        if start > end:  # the changelog is not the one this copy was made from (recreated topic): start over
            log.warning(
                "partition %d: the local state store is ahead of its changelog (%d > %d); rebuilt from the changelog",
                partition,
                start,
                end,
            )
            self.metrics.store_rebuilds.labels("ahead_of_changelog").inc()
            store.clear()
            start = 0
        if start >= end:
            return 0
        self.reader.seek(where, start)
        deadline = time.monotonic() + self.slice_s
        read = 0
        chunk: list[tuple[bytes, bytes | None]] = []
        position = start
        while position < end:
            if time.monotonic() > deadline:
                if chunk:
                    store.apply(chunk, min(position, end))
                raise RetriableFailure(
                    f"restoring {self.topic}[{partition}]: at offset {store.changelog_position} of {end} after "
                    f"{self.slice_s:.0f} s; the restore goes on after the next poll",
                    "RestoreInProgress",
                )
            records = self.reader.poll(0.5, 5_000)
            for record in records:
                if record.offset >= end or record.key is None:
                    continue
                chunk.append((record.key, record.value))
            # The reader's position also moves past transaction markers, which no record shows.
            position = max(position, records[-1].offset + 1 if records else self.reader.position(where))
            if len(chunk) >= APPLY_CHUNK or (position >= end and chunk):
                read += store.apply(chunk, min(position, end))
                chunk = []
        if store.changelog_position < end:
            store.apply([], end)
        return read

    def stage(self, partition: int, offsets: dict[str, int]) -> None:
        """The partition's staged batch, with the input ``offsets`` it covers, out to the changelog (not flushed)."""
        store = self.stores[partition]
        store.meta["offsets"] = offsets
        if self.owner is not None:
            store.meta["group"] = self.owner
        self._changes[partition] = store.changes()
        records = store.changelog_records()
        for key, value in records[:-1]:
            self.publisher.send(self.topic, key, value, partition=partition)
        meta_key, meta = records[-1]

        def delivered(error: Exception | None, _partition: int, offset: int) -> None:
            if error is None:
                self._positions[partition] = offset + 1

        self.publisher.send(self.topic, meta_key, meta, partition=partition, on_delivery=delivered)
        self.metrics.changelog_records.inc(len(records))

    def written(self) -> None:
        """The staged batches' changelog records are durable (flushed, or committed): write them locally."""
        positions, self._positions = self._positions, {}
        changes, self._changes = self._changes, {}
        for partition, store in self.stores.items():
            if partition in positions:
                store.write(positions[partition], changes[partition])
                self.metrics.store_bytes.labels(str(partition)).set(store.size_on_disk())

    def close(self, partition: int) -> None:
        store = self.stores.pop(partition, None)
        self._positions.pop(partition, None)
        self._changes.pop(partition, None)
        if store is not None:
            store.close()  # what was staged and not written is dropped: its records are read again

    def close_all(self) -> None:
        for partition in list(self.stores):
            self.close(partition)
        self.reader.close()
