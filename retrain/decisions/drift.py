"""River drift detectors on one model's error stream, configured by name. Pure Python, no Kafka.

Polarity matters. Every detector here is fed so that it can see the error rate *rise*:
- ADWIN, Page-Hinkley and KSWIN watch any change of their input's mean or distribution (two-sided); they
  are fed the error and each detection says whether the error went up or down.
- DDM, EDDM, HDDM_A and HDDM_W watch a rise of an error stream (1 = error): fed the error.
- FHDDM (River 0.26) detects only a *fall* of its input's mean: it is fed 1 = correct, so that a rise of the
  error rate is a fall of its input. Fed 1 = error it would miss every rise.
The binary detectors need a 0/1 error (classification); regression's absolute error goes to the others.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from river import drift
from river.drift import binary

from retrain.decisions.ring import ErrorRing
from retrain.schemas.types import Target

Polarity = Literal["error", "correct"]
Task = Literal["classification", "regression"]


def task_of(model_id: str, regression_models: Collection[str]) -> Task:
    """A model's task: regression when it is one of the configured regression models, else classification."""
    return "regression" if model_id in regression_models else "classification"


def example_error(prediction: Target, label: Target, task: Task) -> float:
    """0/1 for classification; the absolute error for regression."""
    if task == "classification":
        same = type(prediction) is type(label) and prediction == label
        return 0.0 if same else 1.0
    if isinstance(prediction, str | bool) or isinstance(label, str | bool):
        raise ValueError(f"a regression model needs numbers, got prediction {prediction!r} and label {label!r}")
    return abs(float(prediction) - float(label))


@dataclass(frozen=True)
class DetectorKind:
    factory: Callable[..., Any]
    feed: Polarity  # what the detector is given: the error, or 1 - error ("correct")
    binary_only: bool
    two_sided: bool  # built to fire on a change either way (the direction is checked for every detector)
    defaults: tuple[tuple[str, Any], ...] = ()  # parameters that differ from River's unless the spec sets them


DETECTORS: dict[str, DetectorKind] = {
    "ADWIN": DetectorKind(drift.ADWIN, "error", binary_only=False, two_sided=True),
    "PageHinkley": DetectorKind(drift.PageHinkley, "error", binary_only=False, two_sided=True),
    # KSWIN samples its reference window at random: seeded, the same errors give the same detections every run.
    "KSWIN": DetectorKind(drift.KSWIN, "error", binary_only=False, two_sided=True, defaults=(("seed", 0),)),
    "DDM": DetectorKind(binary.DDM, "error", binary_only=True, two_sided=False),
    "EDDM": DetectorKind(binary.EDDM, "error", binary_only=True, two_sided=False),
    "HDDM_A": DetectorKind(binary.HDDMA, "error", binary_only=True, two_sided=False),
    "HDDM_W": DetectorKind(binary.HDDMW, "error", binary_only=True, two_sided=False),
    "FHDDM": DetectorKind(binary.FHDDM, "correct", binary_only=True, two_sided=False),
}


@dataclass(frozen=True)
class DetectorSpec:
    """A detector by River name, with its parameters (River's defaults where none are given, but KSWIN's seed 0)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, **params: Any) -> DetectorSpec:
        return cls(name, tuple(sorted(params.items())))

    def build(self, task: Task) -> Any:
        kind = DETECTORS.get(self.name)
        if kind is None:
            raise ValueError(f"unknown drift detector {self.name!r}; choose from {', '.join(DETECTORS)}")
        if kind.binary_only and task == "regression":
            raise ValueError(
                f"{self.name} watches a 0/1 error stream; a regression model needs ADWIN, PageHinkley or KSWIN"
            )
        try:
            return kind.factory(**{**dict(kind.defaults), **dict(self.params)})
        except TypeError as error:
            raise ValueError(f"bad parameters for {self.name}: {error}") from error


# Either one fires (quorum 1). ADWIN at delta 0.01 and Page-Hinkley at threshold 100 (River's: 0.002 and 50) each
# raised no event on 20 steady 50,000-example Bernoulli streams (error rates 0.05, 0.15, 0.3, 0.45; seeds 0-4),
# where Page-Hinkley at 50 fired 14 times on 15 of them (rates up to 0.3). Each catches drifts the other is slow
# on: SEA's milder second drift, Page-Hinkley after 421 examples; Agrawal's switches, ADWIN after 23-39.
DEFAULT_DETECTORS = (DetectorSpec.of("ADWIN", delta=0.01), DetectorSpec.of("PageHinkley", threshold=100))


@dataclass(frozen=True)
class Detection:
    """One detector reporting a change at ``index`` (0-based position in the error stream since reset)."""

    detector: str
    index: int
    rising: bool  # the error went up (a drift worth retraining for)
    before: float  # mean error before the change
    after: float  # mean error after it
    window_width: int  # examples believed to follow the change point


class DriftMonitor:
    """Feeds one model's error stream to its detectors and reports each detection with its direction.

    ``before`` and ``after``: ADWIN splits its own window at the change, so its figures are exact and its
    window after the drop is the post-change width. For the others, ``after`` is the mean of the last
    ``evidence_window`` errors and ``before`` the mean of everything before those since the last reset.
    """

    def __init__(
        self,
        specs: tuple[DetectorSpec, ...] = DEFAULT_DETECTORS,
        task: Task = "classification",
        evidence_window: int = 100,
    ) -> None:
        if not specs:
            raise ValueError("a drift monitor needs at least one detector")
        self.specs = specs
        self.task = task
        self.evidence_window = evidence_window
        self.reset()  # builds the detectors: an unknown name or bad parameters raise here
        self._kinds = [DETECTORS[spec.name] for spec in specs]

    def reset(self) -> None:
        """A fresh baseline: new detectors, no history (after a new model version is promoted)."""
        self._detectors = [spec.build(self.task) for spec in self.specs]
        self.warnings: list[str] = []  # detectors in their warning zone after the last update
        self.n = 0
        self._sum = 0.0
        self._recent = ErrorRing(self.evidence_window)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a snapshot): the recent errors come as a float array, packed again here."""
        self.__dict__.update(state)
        if isinstance(self._recent, array):
            self._recent = ErrorRing.of(self._recent)

    def update(self, error: float) -> list[Detection]:
        position = self.n
        slot = position % self.evidence_window
        self._sum += error
        self._recent[slot] = error
        self.n += 1
        detections = []
        self.warnings = []
        for spec, kind, detector in zip(self.specs, self._kinds, self._detectors, strict=True):
            value = error if kind.feed == "error" else 1.0 - error
            if spec.name == "ADWIN":
                width_before, mean_before = detector.width, detector.estimation
            detector.update(value)
            if getattr(detector, "warning_detected", False):  # DDM, EDDM, HDDM_A, HDDM_W have a warning zone
                self.warnings.append(spec.name)
            if not detector.drift_detected:
                continue
            if spec.name == "ADWIN":
                detections.append(self._adwin_detection(detector, position, error, width_before, mean_before))
            else:
                detections.append(self._window_detection(spec.name, kind, position))
        return detections

    def _adwin_detection(self, detector: Any, position: int, error: float, width_before: int, mean_before: float):
        width_after, mean_after = int(detector.width), float(detector.estimation)
        total_before = width_before * mean_before + error
        dropped = width_before + 1 - width_after
        before = (total_before - width_after * mean_after) / dropped if dropped > 0 else mean_before
        return Detection("ADWIN", position, mean_after > before, before, mean_after, int(width_after))

    def _window_detection(self, name: str, kind: DetectorKind, position: int) -> Detection:
        recent_count = min(self.n, self.evidence_window)
        recent_sum = float(sum(self._recent[i] for i in range(recent_count)))
        after = recent_sum / recent_count
        older = self.n - recent_count
        before = (self._sum - recent_sum) / older if older else after
        # Direction from the evidence for every detector: EDDM (and, rarely, HDDM_W) also fire on a fall.
        return Detection(name, position, after > before, before, after, recent_count)


def change_point(errors: Sequence[float]) -> int:
    """Where the error most likely rose: the index of the first example after a single upward mean shift.

    The maximum-likelihood split for one shift of the mean: the ``k`` that maximises
    ``k (n - k) / n * (mean_after - mean_before) ** 2`` among the splits where the mean rises. It locates the change
    from the errors alone, whichever detector fired (a detector's own window may still hold part of the old
    concept). Returns 0 for fewer than two errors or no rise.
    """
    n = len(errors)
    if n < 2:
        return 0
    total = float(sum(errors))
    best, best_k, prefix = 0.0, 0, 0.0
    for k in range(1, n):
        prefix += errors[k - 1]
        before, after = prefix / k, (total - prefix) / (n - k)
        if after > before:
            score = k * (n - k) / n * (after - before) ** 2
            if score > best:
                best, best_k = score, k
    return best_k


def proportion_rise_z(before: float, n_before: int, after: float, n_after: int) -> float:
    """How many standard errors the error rate ``after`` (over ``n_after``) is above ``before`` (over ``n_before``):
    the pooled two-proportion z statistic; 0 when a side is empty or both rates are 0 or 1."""
    if n_before < 1 or n_after < 1:
        return 0.0
    pooled = (before * n_before + after * n_after) / (n_before + n_after)
    variance = pooled * (1 - pooled) * (1 / n_before + 1 / n_after)
    return (after - before) / math.sqrt(variance) if variance > 0 else 0.0


def rise_z(before: Sequence[float], after: Sequence[float]) -> float:
    """How many standard errors the mean error ``after`` a change point is above the mean ``before`` it.

    A two-sample z statistic with the pooled variance (for 0/1 errors, the two-proportion test); 0 when either side
    is empty or every error is the same.
    """
    n_before, n_after = len(before), len(after)
    if not n_before or not n_after:
        return 0.0
    total = float(sum(before)) + float(sum(after))
    n = n_before + n_after
    mean = total / n
    variance = sum((e - mean) ** 2 for e in before) + sum((e - mean) ** 2 for e in after)
    variance /= max(1, n - 1)
    if variance <= 0:
        return 0.0
    difference = float(sum(after)) / n_after - float(sum(before)) / n_before
    return difference / math.sqrt(variance * (1 / n_before + 1 / n_after))
