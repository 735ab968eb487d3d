"""Join predictions with their late labels by ``(model_id, prediction_id)``. Pure Python, no Kafka.

The key holds the model: teams often use a business id (an order) as the prediction id, and several models score
the same order.

Either side may arrive first. Both sides wait in a buffer bounded by a time-to-live and by a hard cap on how
many are held. Time is event time, and the watermark is the *smaller* of the two sides' largest timestamps
(as in Flink's joins): a label expires only once the prediction stream has moved past the label's deadline, so
a consumer that happens to read the labels topic faster than the predictions topic does not throw labels away.
A side that has not been seen yet expires nothing; the cap still bounds memory (evicting the oldest arrivals).
One joiner serves one partition of the co-partitioned predictions and labels topics, so it sees both sides of
every join.

The joiner also knows, for each side, the offset of the oldest record still waiting: a consumer that commits
no further than that never loses a pending record to a crash (it is read again after a restart). And it keeps
the offsets of each join until both are committed, so that the two topics' commits never split a pair: after a
crash both sides of a join are read again, or neither (one side alone would wait for a partner that never
comes, and a label would end in the dead letters although it was joined). See :meth:`commit_offsets`.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from retrain.schemas import LabeledExample, LabelEvent, PredictionEvent
from retrain.schemas.fast import trusted
from retrain.schemas.types import FeatureValue

JoinKey = tuple[str, str]  # (model_id, prediction_id)


class LabelOutcome(StrEnum):
    JOINED = "joined"
    PENDING = "pending"  # waits for its prediction
    DUPLICATE = "duplicate"  # its prediction was already joined, or another label already waits


class PredictionOutcome(StrEnum):
    JOINED = "joined"
    PENDING = "pending"
    DUPLICATE = "duplicate"


# A waiting prediction's fields, not the event object (a third of its memory): id, model, version, features,
# prediction, timestamp.
_Fields = tuple[str, str, int, dict[str, FeatureValue], Any, datetime]


def prediction_fields(prediction: PredictionEvent) -> _Fields:
    p = prediction
    return (p.prediction_id, p.model_id, p.model_version, p.features, p.prediction, p.timestamp)


def prediction_from(fields: _Fields) -> PredictionEvent:
    names = ("prediction_id", "model_id", "model_version", "features", "prediction", "timestamp")
    return trusted(
        PredictionEvent, {"schema_version": PredictionEvent.SCHEMA_VERSION, **dict(zip(names, fields, strict=True))}
    )


@dataclass(slots=True)
class _Waiting:
    event: _Fields | LabelEvent
    offset: int
    expires_at: float


@dataclass
class JoinStats:
    joined: int = 0
    duplicate_labels: int = 0
    duplicate_predictions: int = 0
    expired_predictions: int = 0
    unmatched_labels: int = 0  # labels that expired (or were evicted) without meeting their prediction
    evicted: int = 0  # entries pushed out by the cap before their time


@dataclass
class Expired:
    predictions: list[PredictionEvent] = field(default_factory=list)
    labels: list[tuple[LabelEvent, int]] = field(default_factory=list)  # with their offsets, for dead letters


def check_limits(prediction_ttl_s: float, label_ttl_s: float, max_pending: int, remember_joined: int) -> None:
    """The join's limits, refused when they make no sense (both joiners share them)."""
    ttls_ok = all(math.isfinite(ttl) and ttl > 0 for ttl in (prediction_ttl_s, label_ttl_s))
    if not ttls_ok or max_pending < 1 or remember_joined < 0:
        raise ValueError("TTLs must be positive, max_pending at least 1, remember_joined not negative")


class LabelJoiner:
    """Buffers both sides of the prediction/label join for one partition."""

    def __init__(
        self,
        *,
        prediction_ttl_s: float = 3600.0,
        label_ttl_s: float = 600.0,
        max_pending: int = 1_000_000,
        remember_joined: int = 100_000,
        pair_commits: bool = True,
    ) -> None:
        check_limits(prediction_ttl_s, label_ttl_s, max_pending, remember_joined)
        self.prediction_ttl_s = prediction_ttl_s
        self.label_ttl_s = label_ttl_s
        self.max_pending = max_pending
        self.remember_joined = remember_joined
        # Keep both sides of a join on the same side of the commits (see commit_offsets). Needed only when a
        # restart does not learn which joins were made (the detector's snapshots carry unsettled_ids()).
        self.pair_commits = pair_commits
        self.stats = JoinStats()
        self._latest_prediction = float("-inf")  # largest event time seen on each side, epoch seconds
        self._latest_label = float("-inf")
        self._predictions: dict[JoinKey, _Waiting] = {}
        self._labels: dict[JoinKey, _Waiting] = {}
        # Arrival order of each side (= offset order within the partition); entries leave lazily.
        self._prediction_order: deque[tuple[JoinKey, _Waiting]] = deque()
        self._label_order: deque[tuple[JoinKey, _Waiting]] = deque()
        # Deadline order of each side (event times need not follow offsets); entries leave lazily too.
        self._prediction_deadlines: list[tuple[float, int, JoinKey, _Waiting]] = []
        self._label_deadlines: list[tuple[float, int, JoinKey, _Waiting]] = []
        self._joined: OrderedDict[JoinKey, None] = OrderedDict()
        # Joins restored from a snapshot written before keys held the model: known by prediction id alone.
        self._joined_ids: set[str] = set()
        # (prediction offset, label offset, key) of the joins not yet behind both committed offsets.
        self._unsettled: deque[tuple[int, int, JoinKey]] = deque()

    # -- input --------------------------------------------------------------------------------------------

    def add_prediction(
        self, prediction: PredictionEvent, offset: int
    ) -> tuple[PredictionOutcome, LabeledExample | None]:
        self._latest_prediction = max(self._latest_prediction, prediction.timestamp.timestamp())
        key = (prediction.model_id, prediction.prediction_id)
        if key in self._predictions or self._was_joined(key):
            self.stats.duplicate_predictions += 1
            return PredictionOutcome.DUPLICATE, None
        waiting_label = self._labels.pop(key, None)
        if waiting_label is not None:
            assert isinstance(waiting_label.event, LabelEvent)
            self._unsettled.append((offset, waiting_label.offset, key))
            return PredictionOutcome.JOINED, self._join(prediction_fields(prediction), waiting_label.event)
        entry = _Waiting(
            prediction_fields(prediction), offset, prediction.timestamp.timestamp() + self.prediction_ttl_s
        )
        self._predictions[key] = entry
        self._prediction_order.append((key, entry))
        heapq.heappush(self._prediction_deadlines, (entry.expires_at, offset, key, entry))
        return PredictionOutcome.PENDING, None

    def add_label(self, label: LabelEvent, offset: int) -> tuple[LabelOutcome, LabeledExample | None]:
        self._latest_label = max(self._latest_label, label.timestamp.timestamp())
        key = (label.model_id, label.prediction_id)
        if self._was_joined(key) or key in self._labels:
            self.stats.duplicate_labels += 1
            return LabelOutcome.DUPLICATE, None
        waiting_prediction = self._predictions.pop(key, None)
        if waiting_prediction is not None:
            assert isinstance(waiting_prediction.event, tuple)
            self._unsettled.append((waiting_prediction.offset, offset, key))
            return LabelOutcome.JOINED, self._join(waiting_prediction.event, label)
        entry = _Waiting(label, offset, label.timestamp.timestamp() + self.label_ttl_s)
        self._labels[key] = entry
        self._label_order.append((key, entry))
        heapq.heappush(self._label_deadlines, (entry.expires_at, offset, key, entry))
        return LabelOutcome.PENDING, None

    def expire(self) -> Expired:
        """Take out whatever has waited longer than its TTL (in event time) or is over the cap."""
        expired = Expired()
        for _key, entry in self._drain(self._prediction_order, self._prediction_deadlines, self._predictions):
            assert isinstance(entry.event, tuple)
            expired.predictions.append(prediction_from(entry.event))
        for _key, entry in self._drain(self._label_order, self._label_deadlines, self._labels):
            assert isinstance(entry.event, LabelEvent)
            expired.labels.append((entry.event, entry.offset))
        self.stats.expired_predictions += len(expired.predictions)
        self.stats.unmatched_labels += len(expired.labels)
        return expired

    # -- inspection ---------------------------------------------------------------------------------------

    @property
    def pending_predictions(self) -> int:
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def oldest_pending_offsets(self) -> tuple[int | None, int | None]:
        """Offsets of the oldest prediction and the oldest label still waiting (None: nothing waits)."""
        return _head_offset(self._prediction_order, self._predictions), _head_offset(self._label_order, self._labels)

    def commit_offsets(self, prediction_position: int, label_position: int) -> tuple[int, int]:
        """The offsets of the two topics that are safe to commit together, given how far each has been read.

        No further than the oldest waiting record of each side. With ``pair_commits``, no pair split either:
        when a join's label lies at or past the labels' commit, its prediction must be read again too (and the
        other way round); the two limits feed each other, so they are tightened until neither moves. Under a
        steady stream with labels out of order that chain reaches back to the last commit, so a restart that
        restores :meth:`unsettled_ids` (and knows those sides as duplicates) should not pair. Call :meth:`settle`
        once the offsets are committed.
        """
        oldest_prediction, oldest_label = self.oldest_pending_offsets()
        predictions = prediction_position if oldest_prediction is None else min(prediction_position, oldest_prediction)
        labels = label_position if oldest_label is None else min(label_position, oldest_label)
        moved = self.pair_commits
        while moved:
            moved = False
            for prediction_offset, label_offset, _ in self._unsettled:
                if label_offset >= labels and prediction_offset < predictions:
                    predictions, moved = prediction_offset, True
                if prediction_offset >= predictions and label_offset < labels:
                    labels, moved = label_offset, True
        return predictions, labels

    def settle(self, predictions: int, labels: int) -> None:
        """These offsets are committed: forget the joins now behind both (committed offsets only grow)."""
        self._unsettled = deque(j for j in self._unsettled if j[0] >= predictions or j[1] >= labels)

    @property
    def unsettled_joins(self) -> int:
        """Joins with a side not behind its topic's committed offset: after a crash they are read again."""
        return len(self._unsettled)

    def unsettled_ids(self) -> list[JoinKey]:
        """The keys of those joins: what a snapshot keeps so that a restart knows them as done."""
        return [key for _, _, key in self._unsettled]

    def restore_joined(self, keys: list[JoinKey] | list[str]) -> None:
        """Joins made before a restart: when their records are read again they are duplicates, not new joins.

        Plain prediction ids (snapshots written before keys held the model) match that id for any model.
        """
        for key in keys:
            if isinstance(key, str):
                self._joined_ids.add(key)
            else:
                self._joined[(key[0], key[1])] = None
        while len(self._joined) > max(self.remember_joined, len(keys)):
            self._joined.popitem(last=False)

    def _was_joined(self, key: JoinKey) -> bool:
        return key in self._joined or (bool(self._joined_ids) and key[1] in self._joined_ids)

    # -- internals ----------------------------------------------------------------------------------------

    @property
    def watermark(self) -> float:
        """Event time both sides have reached (epoch seconds); -inf until both have been seen."""
        return min(self._latest_prediction, self._latest_label)

    def _join(self, prediction: _Fields, label: LabelEvent) -> LabeledExample:
        self.stats.joined += 1
        if self.remember_joined:
            self._joined[(prediction[1], prediction[0])] = None
            if len(self._joined) > self.remember_joined:
                self._joined.popitem(last=False)
        return labeled_example(prediction, label)

    def _drain(
        self,
        order: deque[tuple[JoinKey, _Waiting]],
        deadlines: list[tuple[float, int, JoinKey, _Waiting]],
        waiting: dict[JoinKey, _Waiting],
    ) -> list[tuple[JoinKey, _Waiting]]:
        out = []
        watermark = self.watermark
        while deadlines and deadlines[0][0] <= watermark:
            _, _, key, entry = heapq.heappop(deadlines)
            if waiting.get(key) is entry:
                del waiting[key]
                out.append((key, entry))
        over_cap = len(self._predictions) + len(self._labels) - self.max_pending
        while over_cap > 0 and order:
            key, entry = order.popleft()
            if waiting.get(key) is entry:
                del waiting[key]
                self.stats.evicted += 1
                over_cap -= 1
                out.append((key, entry))
        if len(deadlines) > 2 * len(waiting) + 1024:  # joined entries pile up as dead references: rebuild
            deadlines[:] = [item for item in deadlines if waiting.get(item[2]) is item[3]]
            heapq.heapify(deadlines)
        return out


def labeled_example(prediction: _Fields, label: LabelEvent) -> LabeledExample:
    """The labeled example of a prediction's fields and its label."""
    prediction_id, model_id, model_version, features, predicted, predicted_at = prediction
    # Both sides were validated when decoded: build without validating again (hot path).
    return trusted(
        LabeledExample,
        {
            "schema_version": LabeledExample.SCHEMA_VERSION,
            "prediction_id": prediction_id,
            "model_id": model_id,
            "model_version": model_version,
            "features": features,
            "prediction": predicted,
            "label": label.label,
            "prediction_timestamp": predicted_at,
            "label_timestamp": label.timestamp,
        },
    )


def _head_offset(order: deque[tuple[JoinKey, _Waiting]], waiting: dict[JoinKey, _Waiting]) -> int | None:
    while order:
        key, entry = order[0]
        if waiting.get(key) is entry:
            return entry.offset
        order.popleft()
    return None


def ahead_of_arrival(event_time_s: float, record_time_s: float | None, now_s: float, max_skew_s: float) -> float:
    """Seconds by which an event time is ahead of the record's arrival beyond ``max_skew_s`` (0: not too far).

    The arrival is the record's timestamp, or the clock when that is earlier (a producer's clock can be wrong
    too) or missing. Event time is untrusted input: one record dated in the future would move a joiner's
    watermark there.
    """
    arrival = now_s if record_time_s is None else min(record_time_s, now_s)
    return max(0.0, event_time_s - arrival - max_skew_s)
