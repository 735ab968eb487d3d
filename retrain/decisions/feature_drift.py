"""Label-free data drift: detectors per feature of the prediction stream. Pure Python, no Kafka.

Labels may come days late, or never; the features of what is being scored are there at once. A change in a
feature's distribution is an early sign that the model may be going stale, before any error is measured. This
is opt-in: a feature shift does not always hurt a model, and a retrain on it costs a fit.

A feature value is a number, a boolean, a category (a string) or None (missing). Numbers, and booleans as 0/1, go
to a River detector of real-valued streams (ADWIN by default); categories go to :class:`ChiSquare`, a test of the
category shares; a missing value is skipped. A feature whose values change type feeds both, each its own kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy.special import chdtrc

from retrain.decisions.drift import Detection, DetectorSpec, DriftMonitor
from retrain.schemas import Evidence, RetrainEvent, RetrainReason, TrainingWindow

FeatureValue = float | int | bool | str | None
# A category seen fewer times while the categories are chosen goes to "other": a bucket of a few values adds a degree
# of freedom but hardly any evidence (with 1, a 60/30/8% stream with 20 categories of 0.1% missed 13 of 20 shifts of
# 5 points from a to c within 20,000 values; with 5, it missed 4).
MIN_CATEGORY_COUNT = 5


@dataclass(frozen=True)
class CategoryDetection(Detection):
    """A change of category shares: ``before``/``after`` are the shares of ``category``, the one weighing most.

    ``rising``: its share went up; ``index``: the position among the feature's category values since reset.
    """

    category: str | None  # None: the "other" bucket (the categories outside the chosen ones)
    p_value: float


class ChiSquare:
    """Chi-square test of homogeneity between the category counts of a reference window and a recent one.

    The first ``window`` values choose the categories: the ``categories`` most frequent (a space-saving sketch of
    twice as many entries bounds the memory), each seen at least MIN_CATEGORY_COUNT times; every other value counts
    as "other". The next ``window`` values are the reference, then a sliding window of the last ``window`` is
    tested against it every ``step`` values. The categories are chosen on values of their own: chosen on the
    reference, the lucky ones (counts high by chance) would be kept and seem to fall in every recent window.
    After a detection the next full window is the reference: the recent one still holds the old values (a big shift
    is caught when a quarter of it has changed) and, as the reference, would fire a second time on the same change.
    When "other" rose (new categories), the categories are chosen again first. The state is at most 2 x categories
    strings, a few counts and a byte per recent value, whatever the cardinality.
    """

    def __init__(self, window: int = 1_000, categories: int = 32, alpha: float = 1e-5, step: int | None = None):
        if window < 2 or not 1 <= categories <= 255 or not 0 < alpha < 1 or (step is not None and step < 1):
            raise ValueError("ChiSquare needs window >= 2, 1 <= categories <= 255, 0 < alpha < 1, step >= 1")
        self.window = window
        self.categories = categories
        self.alpha = alpha
        self.step = step or max(1, window // 4)
        self.reset()

    def reset(self) -> None:
        self.n = 0  # values seen since reset: the index of a detection
        self._choose_again()

    def _choose_again(self) -> None:
        # While choosing: category -> (count, overcount inherited from the category it replaced); then None.
        self._sketch: dict[str, tuple[int, int]] | None = {}
        self._chosen = 0
        self._codes: dict[str, int] = {}  # category -> bucket; len(_codes) is "other"
        self._reference: list[int] | None = None
        self._recent: list[int] = []
        self._ring = bytearray()  # the bucket of each of the last `window` values
        self._filled = 0  # values in the recent window since it was last emptied

    def update(self, value: str) -> CategoryDetection | None:
        position = self.n
        self.n += 1
        if self._sketch is not None:
            self._count(self._sketch, value)
            return None
        bucket = self._codes.get(value, len(self._codes))
        slot = self._filled % self.window
        if self._filled >= self.window:
            self._recent[self._ring[slot]] -= 1
        self._ring[slot] = bucket
        self._recent[bucket] += 1
        self._filled += 1
        if self._filled < self.window:
            return None
        if self._reference is None:  # the first full window after choosing, or after a detection
            self._reference = self._recent
            self._empty_recent()
            return None
        if (self._filled - self.window) % self.step:
            return None
        detection = self._test(position)
        if detection is not None:
            if detection.category is None and detection.rising:
                self._choose_again()  # new categories: the chosen ones no longer describe the stream
            else:
                self._reference = None  # the next full window, after the change, is the new reference
                self._empty_recent()
        return detection

    def _count(self, sketch: dict[str, tuple[int, int]], value: str) -> None:
        """Space-saving: a new category past capacity takes the place (and count + 1) of the least counted."""
        if value in sketch:
            count, over = sketch[value]
            sketch[value] = (count + 1, over)
        elif len(sketch) < 2 * self.categories:
            sketch[value] = (1, 0)
        else:
            least = min(sketch, key=sketch.__getitem__)
            count = sketch.pop(least)[0]
            sketch[value] = (count + 1, count)
        self._chosen += 1
        if self._chosen == self.window:
            frequent = sorted(sketch, key=sketch.__getitem__, reverse=True)[: self.categories]
            # Kept: seen at least MIN_CATEGORY_COUNT times for sure (the count less what it inherited).
            kept = [c for c in frequent if sketch[c][0] - sketch[c][1] >= MIN_CATEGORY_COUNT]
            self._codes = {c: i for i, c in enumerate(kept)}
            self._sketch = None
            self._ring = bytearray(self.window)
            self._empty_recent()

    def _empty_recent(self) -> None:
        self._recent = [0] * (len(self._codes) + 1)
        self._filled = 0

    def _test(self, position: int) -> CategoryDetection | None:
        assert self._reference is not None
        # Two samples of the same size: the statistic is the sum over the buckets of (a - b)^2 / (a + b).
        cells = [(i, a, b) for i, (a, b) in enumerate(zip(self._reference, self._recent, strict=True)) if a + b]
        if len(cells) < 2:
            return None
        weights = [((a - b) ** 2 / (a + b), i, a, b) for i, a, b in cells]
        p_value = float(chdtrc(len(cells) - 1, sum(w for w, *_ in weights)))
        if p_value >= self.alpha:
            return None
        _, bucket, a, b = max(weights)
        names = list(self._codes)
        category = names[bucket] if bucket < len(names) else None
        before, after = a / self.window, b / self.window
        return CategoryDetection("ChiSquare", position, after > before, before, after, self.window, category, p_value)

    def state_size(self) -> int:
        """Entries held (categories, counts, recent values): bounded by the parameters, not the stream."""
        counts = len(self._reference or ()) + len(self._recent)
        return len(self._sketch or ()) + len(self._codes) + counts + len(self._ring)


@dataclass(frozen=True)
class ChiSquareSpec:
    """The parameters of the categorical detector (see :class:`ChiSquare`)."""

    window: int = 1_000
    categories: int = 32
    alpha: float = 1e-5
    step: int | None = None

    def build(self) -> ChiSquare:
        return ChiSquare(self.window, self.categories, self.alpha, self.step)


class FeatureDriftMonitor:
    """Watches the first ``max_features`` feature names it sees, each with a detector per kind of value."""

    def __init__(
        self, spec: DetectorSpec | None = None, max_features: int = 64, categorical: ChiSquareSpec | None = None
    ) -> None:
        self.spec = spec or DetectorSpec.of("ADWIN")
        # Numbers are not 0/1: only the detectors of real-valued streams apply (checked here, once).
        self.spec.build("regression")
        self.categorical = categorical or ChiSquareSpec()
        self.categorical.build()  # bad parameters raise here
        if max_features < 1:
            raise ValueError("max_features must be at least 1")
        self.max_features = max_features
        self.monitors: dict[str, DriftMonitor] = {}  # numbers and booleans
        self.category_monitors: dict[str, ChiSquare] = {}
        self.watched: set[str] = set()  # the features with a detector of either kind (what max_features counts)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled: a snapshot from before categories has numeric detectors only."""
        self.__dict__.update(state)
        self.__dict__.setdefault("categorical", ChiSquareSpec())
        self.__dict__.setdefault("category_monitors", {})
        self.__dict__.setdefault("watched", set(self.monitors))

    def reset(self) -> None:
        self.monitors.clear()
        self.category_monitors.clear()
        self.watched.clear()

    def update(self, features: Mapping[str, FeatureValue]) -> list[tuple[str, Detection]]:
        """Feed one prediction's features; return (feature, detection) for every feature that changed."""
        changed: list[tuple[str, Detection]] = []
        for name, value in features.items():
            if value is None:
                continue  # missing: no evidence either way
            if name not in self.watched:
                if len(self.watched) >= self.max_features:
                    continue
                self.watched.add(name)
            if isinstance(value, str):
                chi = self.category_monitors.get(name)
                if chi is None:
                    chi = self.category_monitors[name] = self.categorical.build()
                detection = chi.update(value)
                if detection is not None:
                    changed.append((name, detection))
                continue
            number = float(value)  # a boolean is 0/1
            if not math.isfinite(number):
                continue
            monitor = self.monitors.get(name)
            if monitor is None:
                monitor = self.monitors[name] = DriftMonitor((self.spec,), task="regression")
            changed.extend((name, detection) for detection in monitor.update(number))
        return changed


def feature_drift_event(
    model_id: str,
    version: int,
    detected_at: datetime,
    changed: Sequence[tuple[str, Detection]],
    examples_seen: int,
) -> RetrainEvent:
    """The retrain event for the features whose distribution changed (the first one names it)."""
    feature, detection = changed[0]
    metric = f"feature_mean:{feature}"
    values: dict[str, float] = {}
    if isinstance(detection, CategoryDetection):
        # Which category's share moved most ("<other>": categories outside the watched ones); no control chars.
        category = "<other>" if detection.category is None else detection.category
        metric = "".join(c if c.isprintable() else "?" for c in f"category_share:{feature}={category}")
        values = {"p_value": detection.p_value}
    return RetrainEvent(
        model_id=model_id,
        reason=RetrainReason.DRIFT,
        detector=f"{detection.detector}[{feature}]"[:128],
        detected_at=detected_at,
        model_version=version,
        evidence=Evidence(
            metric=metric[:128],
            before=detection.before,
            after=detection.after,
            window_width=detection.window_width,
            examples_seen=examples_seen,
            detectors=[f"{d.detector}[{name}]"[:128] for name, d in changed][:32],
            values=values,
        ),
        suggested_window=TrainingWindow(last_n=max(1, detection.window_width)),
    )
