"""The seam's consumer over a librdkafka consumer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from retrain.kafka.confluent.configuration import log
from retrain.kafka.confluent.failures import _MISSING_TOPIC, _checked, failure, translated
from retrain.kafka.confluent.records import _ck, _ours, to_record
from retrain.kafka.errors import FatalFailure, KafkaFailure
from retrain.kafka.types import RebalanceListener, Record, TopicPartition

T = TypeVar("T")

# Metadata not yet everywhere (a topic just made, a leader moving): librdkafka's offset look-ups fail at once where
# kafka-python's retry; these are retried for up to the consumer's timeout.
_LOOKUP_RETRIED = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def _retrying_lookup(call: Callable[[], T], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as error:
            inner = error.args[0] if error.args else None
            retried = isinstance(inner, KafkaError) and inner.code() in _LOOKUP_RETRIED
            if not retried or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


class ConfluentConsumer:
    def __init__(
        self,
        raw: confluent_kafka.Consumer,
        group_id: str | None,
        timeout_s: float,
        lookup: Callable[[], Any] | None = None,
    ) -> None:
        self.raw = raw
        self.group_id = group_id
        self.timeout_s = timeout_s  # for the calls that ask the broker (commits, offsets, metadata)
        self._listener: RebalanceListener | None = None
        self._paused: set[TopicPartition] = set()
        # Where the application last sought, until a record of the partition is handed out (librdkafka's position
        # is the last handed-out record's, or nothing): what position() answers meanwhile.
        self._sought: dict[TopicPartition, int] = {}
        # Seeks librdkafka refused (_STATE: the partition's fetch has not started yet); retried at each poll, and
        # the partition's records dropped until one succeeds.
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._revoked_in_poll: set[TopicPartition] = set()
        self._starts: dict[TopicPartition, int] = {}  # where an untouched partition's reading starts (see position)
        # Watermark look-ups go through a client of their own (``lookup`` makes one): on the consumer's connection a
        # broker answers them only after the long-poll fetch before them (fetch.wait.max.ms, 500 ms, on an idle
        # partition).
        self._make_lookup = lookup
        self._lookup: Any = None

    def _watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        if self._make_lookup is None:
            return self.raw.get_watermark_offsets(_ck(partition), timeout=self.timeout_s)
        if self._lookup is None:
            self._lookup = self._make_lookup()
        try:
            return self._lookup.get_watermark_offsets(_ck(partition), timeout=self.timeout_s)
        except KafkaException:
            # After a one-broker restart librdkafka can keep answering "unknown partition" from the brokers it
            # decommissioned, long after the broker is back: the next look-up starts from bootstrap.servers afresh.
            self._lookup.close()
            self._lookup = None
            raise

    # rebalances: librdkafka calls these inside consume(), on the thread that polls

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self.raw.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_revoke(self, raw: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]) -> None:
        revoked = [_ours(p) for p in partitions]
        self._revoked_in_poll.update(revoked)
        self._forget(revoked)
        if revoked and self._listener is not None:
            self._listener.on_partitions_revoked(revoked)
        # librdkafka unassigns when the callback does not.

    def _on_assign(self, raw: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]) -> None:
        # Assigned before the listener hears of it, so that what it does (pause, seek) acts on assigned partitions.
        # Each starts from its committed offset (OFFSET_INVALID in the list: the group's commit, else earliest).
        raw.assign(partitions)
        if partitions:
            raw.resume(partitions)  # a new owner starts unpaused (as kafka-python's fresh partition states do)
        if self._listener is not None:
            self._listener.on_partitions_assigned([_ours(p) for p in partitions])

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._paused.discard(partition)
            self._sought.pop(partition, None)
            self._starts.pop(partition, None)
            self._pending_seeks.pop(partition, None)

    @translated
    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        if self._pending_seeks:
            self._retry_seeks()
        self._revoked_in_poll = set()
        # consume() waits out its timeout unless the whole batch is there: take what is fetched at once, else wait
        # for one record only, then what came with it.
        messages = self.raw.consume(num_messages=max_records, timeout=0)
        if not messages:
            messages = self.raw.consume(num_messages=1, timeout=timeout_s)
            if messages and max_records > 1:
                messages += self.raw.consume(num_messages=max_records - 1, timeout=0)
        revoked, self._revoked_in_poll = self._revoked_in_poll, set()
        void = revoked | self._pending_seeks.keys()
        records: list[Record] = []
        raised: KafkaFailure | None = None
        for message in messages:
            error = message.error()
            if error is not None:
                raised = raised or self._consume_error(error)
                continue
            if void and TopicPartition(message.topic(), message.partition()) in void:
                continue
            records.append(to_record(message))
        if self._sought and records:
            for record in records:
                self._sought.pop(TopicPartition(record.topic, record.partition), None)
        if revoked:
            self._reread(revoked)
        if raised is not None:
            # Raised once the batch's bookkeeping is done; its records are not handed out (positions moved past
            # them: the caller rewinds to its commits, as after any failure of a poll).
            raise raised
        return records

    def _consume_error(self, error: KafkaError) -> KafkaFailure | None:
        """The failure a consumer error event stands for; None for events that are no failure."""
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return None
        if code in _MISSING_TOPIC:
            log.warning("librdkafka: %s", error.str())
            return None
        return failure(error)

    def _reread(self, revoked: set[TopicPartition]) -> None:
        """A partition revoked and given back within one consume() is read again from its commit, as a new owner
        would: whatever this consume() returned of it was dropped, fetched before or after the rebalance."""
        kept = sorted(revoked & self.assignment())
        for partition in kept:
            committed = self.committed(partition)
            self.seek(partition, confluent_kafka.OFFSET_BEGINNING if committed is None else committed)

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        metadata = self.raw.list_topics(topic, timeout=self.timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    @translated
    def assign(self, partitions: list[TopicPartition]) -> None:
        # A reader without a group has no commit to start from: the beginning (auto_offset_reset=earliest), with
        # no look-up first. A group member starts at the group's commit.
        start = confluent_kafka.OFFSET_BEGINNING if self.group_id is None else confluent_kafka.OFFSET_INVALID
        self._forget(set(self._sought) | set(self._pending_seeks) | set(self._paused) | set(self._starts))
        self.raw.assign([_ck(p, start) for p in partitions])
        if partitions:
            self.raw.resume([_ck(p) for p in partitions])  # as kafka-python, a new assignment starts unpaused

    @translated
    def assignment(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.assignment()}

    @translated
    def position(self, partition: TopicPartition) -> int:
        sought = self._sought.get(partition)
        if sought is not None and partition in self._pending_seeks:
            return self._resolve(partition, sought)
        # librdkafka forgets the position at a seek, and knows it again once the fetch from there has gone past
        # records (handed out, or skipped: aborted ones and transaction markers).
        (found,) = _checked(self.raw.position([_ck(partition)]))
        if found.offset >= 0:
            self._sought.pop(partition, None)
            return found.offset
        if sought is not None:
            return self._resolve(partition, sought)
        # Nothing handed out since the assignment: where the fetch starts, the commit, else the beginning. Kept
        # until the next seek or assignment: an idle partition would otherwise cost broker requests at each commit.
        start = self._starts.get(partition)
        if start is None:
            committed = self.committed(partition)
            start = self._starts[partition] = committed if committed is not None else self._low(partition)
        return start

    def _resolve(self, partition: TopicPartition, offset: int) -> int:
        if offset == confluent_kafka.OFFSET_BEGINNING:
            return self._low(partition)
        if offset == confluent_kafka.OFFSET_END:
            return self.end_offsets([partition])[partition]
        return offset

    def _low(self, partition: TopicPartition) -> int:
        low, _high = self._watermarks(partition)
        return low

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        if self.group_id is None:
            return None  # a group-less reader commits nothing
        (found,) = _checked(self.raw.committed([_ck(partition)], timeout=self.timeout_s))
        return found.offset if found.offset >= 0 else None

    @translated
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.group_id is None:
            raise FatalFailure("a consumer without a group cannot commit", "NoGroup")
        if not offsets:
            return
        result = self.raw.commit(offsets=[_ck(p, offset) for p, offset in offsets.items()], asynchronous=False)
        _checked(result or [])

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self.raw.seek(_ck(partition, offset))
        except KafkaException as error:
            # librdkafka seeks only a partition whose fetch has started; one just assigned may still be looking up
            # its commit. The seek is retried at each poll, and until it holds the partition's records are dropped.
            if error.args[0].code() != KafkaError._STATE or partition not in self.assignment():
                raise
            self._pending_seeks[partition] = offset
        else:
            self._pending_seeks.pop(partition, None)
        self._sought[partition] = offset

    def _retry_seeks(self) -> None:
        for partition, offset in list(self._pending_seeks.items()):
            try:
                self.raw.seek(_ck(partition, offset))
            except KafkaException as error:
                if error.args[0].code() != KafkaError._STATE:
                    raise
            else:
                del self._pending_seeks[partition]

    def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self.seek(partition, confluent_kafka.OFFSET_BEGINNING)

    @translated
    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        if partitions:
            self.raw.pause([_ck(p) for p in partitions])
            self._paused.update(partitions)

    @translated
    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        if partitions:
            self.raw.resume([_ck(p) for p in partitions])
            self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)  # librdkafka has no query for it

    @translated
    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        # A ListOffsets request with the consumer's isolation level: under read_committed the last stable offset,
        # as kafka-python's end_offsets.
        ends: dict[TopicPartition, int] = {}
        for partition in partitions:
            _low, high = _retrying_lookup(lambda p=partition: self._watermarks(p), self.timeout_s)
            ends[partition] = high
        return ends

    @translated
    def offsets_for_times(self, times_ms: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        if not times_ms:
            return {}
        found = _checked(self.raw.offsets_for_times([_ck(p, at) for p, at in times_ms.items()], timeout=self.timeout_s))
        return {_ours(p): (p.offset if p.offset >= 0 else None) for p in found}

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            _low, high = self.raw.get_watermark_offsets(_ck(partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    @translated
    def group_metadata(self) -> object:
        return self.raw.consumer_group_metadata()

    def close(self) -> None:
        self.raw.close()  # enable.auto.commit is off: nothing is committed
        if self._lookup is not None:
            self._lookup.close()
