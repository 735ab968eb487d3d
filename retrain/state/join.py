"""The prediction/label join of one partition, held in a :class:`PartitionStore` instead of RAM.

Same decisions as :class:`retrain.decisions.join.LabelJoiner` (either side first, event-time TTLs against the
watermark of both sides, a cap evicting the oldest arrivals, duplicates by ``(model_id, prediction_id)``), with
nothing per pending record in Python: a waiting record is its original bytes on disk, decoded again only when its
partner arrives or it expires. Commits need not wait for the oldest pending record, since the store (and its
changelog) keeps it.

Key layout (``side`` is ``P`` prediction or ``L`` label):
    side + model_id + NUL + prediction_id              -> offset, deadline, arrival (3 x int64) + record bytes
    b"B" + record number (int64)                        -> the keys joined in one batch (2-byte length + key each)
    derived, local only, rebuilt from the records above:
    b"D" + side + deadline (ms, biased int64) + key    -> b""   entries by event-time deadline
    b"A" + side + arrival sequence (int64) + key       -> b""   entries by arrival, for the cap
    b"J" + model_id + NUL + prediction_id              -> b""   a join remembered, for duplicates

A join costs the changelog one tombstone; the joins a batch remembers travel in one ``B`` record, forgotten
(tombstoned) a whole record at a time, the oldest first. A key added and taken out within one batch never
reaches the changelog.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Iterator

from retrain.decisions.join import (
    Expired,
    JoinStats,
    LabelOutcome,
    PredictionOutcome,
    check_limits,
    labeled_example,
    prediction_fields,
)
from retrain.schemas import LabeledExample, LabelEvent, PredictionEvent, decode, encode
from retrain.state.store import PartitionStore

PREDICTION, LABEL, JOINED, JOIN_RECORD = b"P", b"L", b"J", b"B"
_LENGTH = struct.Struct(">H")
_HEADER = struct.Struct(">qqq")  # offset, deadline in ms, arrival sequence
_BIAS = 1 << 63


def _ms(seconds: float) -> int:
    return max(-_BIAS, min(_BIAS - 1, math.floor(seconds * 1000)))


def _ordered(value: int) -> bytes:
    """An int64 as 8 bytes that sort as the numbers do."""
    return (value + _BIAS).to_bytes(8, "big")


class StoredJoiner:
    """Buffers both sides of the prediction/label join for one partition in ``store``."""

    def __init__(
        self,
        store: PartitionStore,
        *,
        prediction_ttl_s: float = 7 * 86400.0,
        label_ttl_s: float = 600.0,
        max_pending: int = 100_000_000,
        remember_joined: int = 1_000_000,
        sweep_limit: int = 10_000,
    ) -> None:
        check_limits(prediction_ttl_s, label_ttl_s, max_pending, remember_joined)
        if sweep_limit < 1:
            raise ValueError("sweep_limit must be at least 1")
        self.store = store
        self.prediction_ttl_s = prediction_ttl_s
        self.label_ttl_s = label_ttl_s
        self.max_pending = max_pending
        self.remember_joined = remember_joined
        self.sweep_limit = sweep_limit  # entries taken out per side and call of expire(): bounded work per batch
        self.stats = JoinStats()
        meta = store.meta
        meta.setdefault("count", {"P": 0, "L": 0, "J": 0})
        meta.setdefault("latest", {"P": None, "L": None})
        meta.setdefault("arrivals", 0)
        # Where each index scan starts: everything before is gone. Deletes leave tombstones at the head of an index
        # until RocksDB compacts them away, and a scan from the very start would walk them on every batch.
        meta.setdefault("sweep_from", {"P": None, "L": None})  # deadline (ms) of the earliest entry that may remain
        meta.setdefault("evict_from", {"P": 0, "L": 0})  # arrival number of the oldest entry that may remain
        meta.setdefault("join_records", {"next": 0, "oldest": 0})  # numbers of the B records: the next, the oldest
        self._join_record: bytes | None = None  # the B record this batch's joins go to
        self._added_below: dict[str, int | None] = {"P": None, "L": None}  # earliest deadline staged since expire()

    # -- input --------------------------------------------------------------------------------------------

    def add_prediction(
        self, prediction: PredictionEvent, offset: int, raw: bytes | None = None
    ) -> tuple[PredictionOutcome, LabeledExample | None]:
        """``raw``: the record's bytes as they arrived (stored as they are); encoded from the event if absent."""
        time_s = prediction.timestamp.timestamp()
        self._saw("P", time_s)
        key = _key(prediction.model_id, prediction.prediction_id)
        store = self.store
        if PREDICTION + key in store or JOINED + key in store:
            self.stats.duplicate_predictions += 1
            return PredictionOutcome.DUPLICATE, None
        waiting_label = store.get(LABEL + key)
        if waiting_label is not None:
            self._remove(LABEL, key, waiting_label)
            label = decode(waiting_label[_HEADER.size :], LabelEvent)
            return PredictionOutcome.JOINED, self._join(key, prediction, label)
        self._add(PREDICTION, key, offset, time_s + self.prediction_ttl_s, raw or encode(prediction))
        return PredictionOutcome.PENDING, None

    def add_label(
        self, label: LabelEvent, offset: int, raw: bytes | None = None
    ) -> tuple[LabelOutcome, LabeledExample | None]:
        time_s = label.timestamp.timestamp()
        self._saw("L", time_s)
        key = _key(label.model_id, label.prediction_id)
        store = self.store
        if JOINED + key in store or LABEL + key in store:
            self.stats.duplicate_labels += 1
            return LabelOutcome.DUPLICATE, None
        waiting_prediction = store.get(PREDICTION + key)
        if waiting_prediction is not None:
            self._remove(PREDICTION, key, waiting_prediction)
            prediction = decode(waiting_prediction[_HEADER.size :], PredictionEvent)
            return LabelOutcome.JOINED, self._join(key, prediction, label)
        self._add(LABEL, key, offset, time_s + self.label_ttl_s, raw or encode(label))
        return LabelOutcome.PENDING, None

    def expire(self) -> Expired:
        """Take out what has waited past its TTL (event time) or is over the cap, at most ``sweep_limit`` per side.

        Only written entries are swept: what the current batch staged is seen from the next call on.
        """
        expired = Expired()
        watermark = self.watermark
        if math.isfinite(watermark):
            for key, value in self._sweep(PREDICTION, _ms(watermark)):
                expired.predictions.append(decode(value[_HEADER.size :], PredictionEvent))
                self._remove(PREDICTION, key, value)
            for key, value in self._sweep(LABEL, _ms(watermark)):
                expired.labels.append((decode(value[_HEADER.size :], LabelEvent), _HEADER.unpack_from(value)[0]))
                self._remove(LABEL, key, value)
        count = self.store.meta["count"]
        over_cap = min(count["P"] + count["L"] - self.max_pending, self.sweep_limit)
        if over_cap > 0:
            for side, key, value in self._oldest_arrivals(over_cap):
                self.stats.evicted += 1
                if side == PREDICTION:
                    expired.predictions.append(decode(value[_HEADER.size :], PredictionEvent))
                else:
                    expired.labels.append((decode(value[_HEADER.size :], LabelEvent), _HEADER.unpack_from(value)[0]))
                self._remove(side, key, value)
        self._forget_joins()
        self.stats.expired_predictions += len(expired.predictions)
        self.stats.unmatched_labels += len(expired.labels)
        return expired

    # -- inspection ---------------------------------------------------------------------------------------

    @property
    def pending_predictions(self) -> int:
        return self.store.meta["count"]["P"]

    @property
    def pending_labels(self) -> int:
        return self.store.meta["count"]["L"]

    @property
    def watermark(self) -> float:
        """Event time both sides have reached (epoch seconds); -inf until both have been seen."""
        latest = self.store.meta["latest"]
        if latest["P"] is None or latest["L"] is None:
            return float("-inf")
        return min(latest["P"], latest["L"])

    # -- internals ----------------------------------------------------------------------------------------

    def _saw(self, side: str, time_s: float) -> None:
        latest = self.store.meta["latest"]
        if latest[side] is None or time_s > latest[side]:
            latest[side] = time_s

    def _add(self, side: bytes, key: bytes, offset: int, deadline_s: float, raw: bytes) -> None:
        meta = self.store.meta
        arrival = meta["arrivals"]
        meta["arrivals"] = arrival + 1
        deadline = _ms(deadline_s)
        name = side.decode()
        below = self._added_below[name]
        self._added_below[name] = deadline if below is None else min(below, deadline)
        store = self.store
        store.put(side + key, _HEADER.pack(offset, deadline, arrival) + raw, absent=True)
        store.put(b"D" + side + _ordered(deadline) + key, b"", local=True, absent=True)
        store.put(b"A" + side + _ordered(arrival) + key, b"", local=True, absent=True)
        meta["count"][name] += 1

    def _remove(self, side: bytes, key: bytes, value: bytes) -> None:
        _, deadline, arrival = _HEADER.unpack_from(value)
        store = self.store
        store.delete(side + key)
        store.delete(b"D" + side + _ordered(deadline) + key, local=True)
        store.delete(b"A" + side + _ordered(arrival) + key, local=True)
        self.store.meta["count"][side.decode()] -= 1

    def _join(self, key: bytes, prediction: PredictionEvent, label: LabelEvent) -> LabeledExample:
        self.stats.joined += 1
        if self.remember_joined:
            store = self.store
            store.put(JOINED + key, b"", local=True, absent=True)
            record = self._join_record
            if record is None or not store.is_staged(record):  # the batch's first join: a new record
                numbers = store.meta["join_records"]
                record = self._join_record = JOIN_RECORD + _ordered(numbers["next"])
                numbers["next"] += 1
            store.append(record, _LENGTH.pack(len(key)) + key)
            store.meta["count"]["J"] += 1
        return labeled_example(prediction_fields(prediction), label)

    def _forget_joins(self) -> None:
        """Whole B records, the oldest first, while the joins remembered stay at least ``remember_joined``."""
        store = self.store
        count, numbers = store.meta["count"], store.meta["join_records"]
        if count["J"] <= self.remember_joined:
            return
        forgotten = 0
        start = JOIN_RECORD + _ordered(numbers["oldest"])
        for record, value in store.scan(JOIN_RECORD, start=start):
            keys = _joined_keys(value)
            if count["J"] - len(keys) < self.remember_joined or forgotten >= self.sweep_limit:
                return
            store.delete(record)
            for key in keys:
                store.delete(JOINED + key, local=True)
            count["J"] -= len(keys)
            forgotten += len(keys)
            numbers["oldest"] = int.from_bytes(record[1:9], "big") - _BIAS + 1

    def _sweep(self, side: bytes, watermark_ms: int) -> list[tuple[bytes, bytes]]:
        """Up to ``sweep_limit`` written entries of ``side`` whose deadline the watermark has reached."""
        name = side.decode()
        bounds = self.store.meta["sweep_from"]
        prefix = b"D" + side
        # Entries added since the last sweep may lie before its end (an old event time): start at them too. Those
        # still staged are not seen yet, so the next sweep starts at them again.
        added, self._added_below[name] = self._added_below[name], None
        start = bounds[name] if added is None or bounds[name] is None else min(bounds[name], added)
        if start is not None and start > watermark_ms:  # nothing is due (the usual case with days of TTL)
            bounds[name] = start
            return []
        out = []
        next_from = watermark_ms + 1  # all of them, unless the limit stops the walk earlier
        for index_key, _ in self.store.scan(
            prefix, start=None if start is None else prefix + _ordered(start), below=prefix + _ordered(watermark_ms + 1)
        ):
            key = index_key[len(prefix) + 8 :]
            value = self.store.get(side + key)
            if value is not None:
                if len(out) >= self.sweep_limit:
                    next_from = int.from_bytes(index_key[len(prefix) : len(prefix) + 8], "big") - _BIAS
                    break
                out.append((key, value))
        bounds[name] = next_from if added is None else min(next_from, added)
        return out

    def _oldest_arrivals(self, count: int) -> list[tuple[bytes, bytes, bytes]]:
        """The ``count`` oldest waiting entries of both sides, by arrival."""
        out = []
        for arrival, side, key in heapq.merge(self._arrivals(PREDICTION), self._arrivals(LABEL)):
            value = self.store.get(side + key)
            if value is not None:
                out.append((side, key, value))
            # Entries before it are gone (evicted now, or joined or expired before): later scans start here.
            self.store.meta["evict_from"][side.decode()] = int.from_bytes(arrival, "big") - _BIAS + 1
            if len(out) >= count:
                break
        return out

    def _arrivals(self, side: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
        """(arrival bytes, side, entry key) of an arrival index, from the oldest entry that may remain."""
        prefix = b"A" + side
        start = prefix + _ordered(self.store.meta["evict_from"][side.decode()])
        for arrival_key, _ in self.store.scan(prefix, start=start):
            yield arrival_key[2:10], side, arrival_key[10:]


INDEX_PREFIXES = (b"D", b"A", JOINED)


def index_keys(key: bytes, value: bytes) -> list[bytes]:
    """The derived keys a record brings with it (kept out of the changelog, rebuilt from the record on restore)."""
    side = key[:1]
    if side == JOIN_RECORD:
        return [JOINED + joined for joined in _joined_keys(value)]
    if side not in (PREDICTION, LABEL):
        return []
    _, deadline, arrival = _HEADER.unpack_from(value)
    return [b"D" + side + _ordered(deadline) + key[1:], b"A" + side + _ordered(arrival) + key[1:]]


def _joined_keys(record: bytes) -> list[bytes]:
    keys, at = [], 0
    while at < len(record):
        (length,) = _LENGTH.unpack_from(record, at)
        keys.append(record[at + 2 : at + 2 + length])
        at += 2 + length
    return keys


def _key(model_id: str, prediction_id: str) -> bytes:
    return model_id.encode() + b"\x00" + prediction_id.encode()
