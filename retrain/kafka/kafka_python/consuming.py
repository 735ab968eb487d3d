"""The seam's consumer over a kafka-python consumer, with its rebalances handed to the polling thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import kafka
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata

from retrain.kafka.kafka_python.failures import translated
from retrain.kafka.kafka_python.partitions import _kp, _ours
from retrain.kafka.types import RebalanceListener, Record, TopicPartition


class _Rebalances(kafka.ConsumerRebalanceListener):
    """Notes rebalances on kafka-python's IO thread (where nothing may block) for delivery on the polling thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, list[TopicPartition]]] = []

    def on_partitions_revoked(self, revoked: list[kafka.TopicPartition]) -> None:
        with self.lock:
            self.events.append(("revoked", [_ours(p) for p in revoked]))

    def on_partitions_assigned(self, assigned: list[kafka.TopicPartition]) -> None:
        with self.lock:
            self.events.append(("assigned", [_ours(p) for p in assigned]))

    def take(self) -> list[tuple[str, list[TopicPartition]]]:
        with self.lock:
            events, self.events = self.events, []
        return events


class KafkaPythonConsumer:
    def __init__(self, raw: KafkaConsumer) -> None:
        self.raw = raw
        self._listener: RebalanceListener | None = None
        self._rebalances = _Rebalances()

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self.raw.subscribe(topics, listener=self._rebalances)
        # kafka-python's coordinator notes the subscribed topics' partitions only from metadata updates; one that
        # came after its first assignment made every start rebalance twice. topics() always asks the broker.
        self.raw.topics()

    @translated
    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        batches = self.raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        dropped = self._deliver_rebalances(batches)
        records: list[Record] = []
        for partition, fetched in batches.items():
            if partition in dropped:
                continue
            records.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.headers or []) for r in fetched
            )
        return records

    def _deliver_rebalances(self, batches: dict) -> set[kafka.TopicPartition]:
        """Tell the listener of the rebalances since the last poll; the partitions whose fetched records are void.

        kafka-python 3 keeps a partition's fetch position when a rebalance revokes it and gives it straight back
        (Java resets it), while the listener dropped its state on the revocation: such a partition is read again
        from its committed offset, as a new owner would, and what was fetched from the kept position is dropped.
        The listener hears of an assignment after kafka-python fetched for it, so a partition it pauses or seeks
        gives up what this poll fetched (a paused one is read from there once resumed).
        """
        events = self._rebalances.take()
        if not events or self._listener is None:
            return set()
        void: set[kafka.TopicPartition] = set()
        revoked_last: set[TopicPartition] = set()
        for kind, partitions in events:
            if kind == "revoked":
                revoked_last = set(partitions)
                void |= {_kp(p) for p in partitions}
                if partitions:
                    self._listener.on_partitions_revoked(partitions)
                continue
            assigned = self.raw.assignment()
            for partition in sorted(set(partitions) & revoked_last):
                if _kp(partition) in assigned:
                    committed = self.raw.committed(_kp(partition))
                    if committed is None:
                        self.raw.seek_to_beginning(_kp(partition))
                    else:
                        self.raw.seek(_kp(partition), committed)
            revoked_last = set()
            fetched_from = {
                _kp(p): batches[_kp(p)][0].offset for p in partitions if batches.get(_kp(p)) and _kp(p) not in void
            }
            fetched_to = {p: self._position(p) for p in fetched_from}
            self._listener.on_partitions_assigned(partitions)
            paused = self.raw.paused()
            for partition, first in fetched_from.items():
                if self._position(partition) != fetched_to[partition]:  # sought by the listener
                    void.add(partition)
                elif partition in paused:
                    void.add(partition)
                    self.raw.seek(partition, first)
        return void

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.raw.partitions_for_topic(topic) or ())

    @translated
    def assign(self, partitions: list[TopicPartition]) -> None:
        self.raw.assign([_kp(p) for p in partitions])

    def assignment(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.assignment()}

    @translated
    def position(self, partition: TopicPartition) -> int:
        return self._position(_kp(partition))

    def _position(self, partition: kafka.TopicPartition) -> int:
        """The next offset to fetch: the one the client holds, else (not known yet) the one the broker gives.

        kafka-python's own position() waits for the broker even when it holds the offset: for the committed offsets
        of every other assigned partition without one, and for the truncation check it runs after a leader change
        (KIP-320), though the offset it holds meanwhile is where the next fetch starts. After a broker restart that
        wait held the scorer past its shutdown grace.
        """
        subscription = self.raw._subscription  # kafka-python has no public read of the position it holds
        held = subscription.position(partition) if subscription.is_assigned(partition) else None
        return self.raw.position(partition) if held is None else held.offset

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        return self.raw.committed(_kp(partition))

    @translated
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.raw.commit({_kp(p): OffsetAndMetadata(offset, "", -1) for p, offset in offsets.items()})

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.raw.seek(_kp(partition), offset)

    @translated
    def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.seek_to_beginning(*(_kp(p) for p in partitions))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.pause(*(_kp(p) for p in partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.resume(*(_kp(p) for p in partitions))

    def paused(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.paused()}

    @translated
    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_ours(p): offset for p, offset in self.raw.end_offsets([_kp(p) for p in partitions]).items()}

    @translated
    def offsets_for_times(self, times_ms: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        found = self.raw.offsets_for_times({_kp(p): at for p, at in times_ms.items()})
        return {_ours(p): (None if at is None else at.offset) for p, at in found.items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.raw.highwater(_kp(partition))

    @translated
    def group_metadata(self) -> object:
        return self.raw.group_metadata()

    def close(self) -> None:
        self.raw.close(autocommit=False)
