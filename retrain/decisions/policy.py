"""When to ask for a retrain: drift, performance, data volume, with one event per episode. Pure Python.

A :class:`ModelWatch` follows one model: it turns each labeled example into an error, feeds the drift
monitor and the rolling metric, counts examples since the last model, and decides. After it asks, it stays
quiet (cooldown) until the model is updated, or enough examples or time have passed. When a new version is
promoted it starts a fresh baseline and ignores the errors of older versions that arrive after the swap.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime

from retrain.decisions.drift import DEFAULT_DETECTORS, Detection, DetectorSpec, DriftMonitor, Task
from retrain.decisions.feature_drift import FeatureDriftMonitor
from schemas import (
    Evidence,
    LabeledExample,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    StreamPosition,
    TrainingWindow,
)
from schemas.types import Target


def example_error(prediction: Target, label: Target, task: Task) -> float:
    """0/1 for classification; the absolute error for regression."""
    if task == "classification":
        same = type(prediction) is type(label) and prediction == label
        return 0.0 if same else 1.0
    if isinstance(prediction, str | bool) or isinstance(label, str | bool):
        raise ValueError(f"a regression model needs numbers, got prediction {prediction!r} and label {label!r}")
    return abs(float(prediction) - float(label))


@dataclass(frozen=True)
class PolicyConfig:
    task: Task = "classification"
    detectors: tuple[DetectorSpec, ...] = DEFAULT_DETECTORS
    # Drift fires when this many of the detectors report a rise within `agreement_window` examples.
    drift_quorum: int = 2
    agreement_window: int = 1_000
    # Performance: the rolling metric over the last `performance_window` examples.
    performance_window: int = 500
    min_accuracy: float | None = None  # absolute floor (classification)
    max_error: float | None = None  # absolute ceiling (regression: mean absolute error)
    relative_drop: float | None = 0.9  # below 0.9 x the accuracy at promotion (the seed's rule)
    # Without an accuracy from the trainer, the reference is measured over this many windows after promotion.
    reference_windows: int = 5
    # Data volume: this many labeled examples since the last model; a model with no version starts sooner.
    volume_examples: int | None = 100_000
    cold_start_examples: int = 1_000
    # Cooldown: after an event, wait for a model update, or this many examples, or this many seconds.
    cooldown_examples: int = 10_000
    cooldown_s: float = 3_600.0
    # Label-free data drift on the prediction stream's features (opt-in): a detector per feature.
    feature_detector: DetectorSpec | None = None
    feature_limit: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.drift_quorum <= len(self.detectors):
            raise ValueError(f"drift_quorum must be between 1 and the number of detectors ({len(self.detectors)})")
        if min(self.performance_window, self.agreement_window, self.cold_start_examples, self.reference_windows) < 1:
            raise ValueError("windows and counts must be positive")
        if self.relative_drop is not None and not 0 < self.relative_drop < 1:
            raise ValueError("relative_drop must be between 0 and 1")


@dataclass
class _Cooldown:
    examples_at: int
    time_at: float


@dataclass
class ModelWatch:
    """The state and decisions for one model_id."""

    model_id: str
    config: PolicyConfig = field(default_factory=PolicyConfig)
    version: int = 0
    reference_accuracy: float | None = None
    ignored_stale: int = 0

    def __post_init__(self) -> None:
        self.last_detections: list[Detection] = []
        self.features = (
            FeatureDriftMonitor(self.config.feature_detector, self.config.feature_limit)
            if self.config.feature_detector is not None
            else None
        )
        self.monitor = DriftMonitor(self.config.detectors, self.config.task)
        self._rolling = array("f", bytes(4 * self.config.performance_window))
        self._start_baseline()

    # -- input --------------------------------------------------------------------------------------------

    def model_updated(self, version: int, accuracy: float | None = None) -> None:
        """A new version is in service: fresh detectors, fresh metric, cooldown over."""
        self.version = version
        self.reference_accuracy = accuracy
        self._start_baseline()

    def observe(
        self, example: LabeledExample, position: StreamPosition | None = None, now: datetime | None = None
    ) -> RetrainEvent | None:
        """Account for one labeled example; return a retrain event when one is due."""
        if example.model_version < self.version:
            self.ignored_stale += 1  # an old version's error after the swap: not this model's baseline
            return None
        if example.model_version > self.version:
            self.model_updated(example.model_version)  # we missed the update event: adopt the version
        error = example_error(example.prediction, example.label, self.config.task)
        self.examples += 1
        slot = self._seen % self.config.performance_window
        self._rolling_sum += error - self._rolling[slot]
        self._rolling[slot] = error
        self._seen += 1
        if self._seen <= self.config.reference_windows * self.config.performance_window:
            self._reference_error_sum += error
        detections = [d for d in self.monitor.update(error) if d.rising]
        self.last_detections = detections
        for detection in detections:
            self._rising[detection.detector] = detection
        clock = (now or example.label_timestamp).timestamp()
        if self._cooling_down(clock):
            return None
        event = self._drift_event(example) or self._performance_event(example) or self._volume_event(example)
        if event is not None:
            event = event.model_copy(update={"evidence": event.evidence.model_copy(update={"position": position})})
            self._cooldown = _Cooldown(self.examples, clock)
        return event

    def observe_prediction(self, prediction: PredictionEvent) -> RetrainEvent | None:
        """Label-free: feed a prediction's features to the feature detectors (when configured)."""
        if self.features is None or prediction.model_version < self.version:
            return None
        changed = self.features.update(prediction.features)
        self.last_feature_detections = changed
        if not changed or self._cooling_down(prediction.timestamp.timestamp()):
            return None
        feature, detection = changed[0]
        event = RetrainEvent(
            model_id=self.model_id,
            reason=RetrainReason.DRIFT,
            detector=f"{detection.detector}[{feature}]",
            detected_at=prediction.timestamp,
            model_version=self.version,
            evidence=Evidence(
                metric=f"feature_mean:{feature}"[:128],
                before=detection.before,
                after=detection.after,
                window_width=detection.window_width,
                examples_seen=self.examples,
                detectors=[f"{d.detector}[{name}]"[:128] for name, d in changed][:32],
            ),
            suggested_window=TrainingWindow(last_n=max(1, detection.window_width)),
        )
        self._cooldown = _Cooldown(self.examples, prediction.timestamp.timestamp())
        return event

    # -- metrics ------------------------------------------------------------------------------------------

    @property
    def rolling_error(self) -> float | None:
        count = min(self._seen, self.config.performance_window)
        return self._rolling_sum / count if count else None

    @property
    def rolling_accuracy(self) -> float | None:
        error = self.rolling_error
        return None if error is None or self.config.task != "classification" else 1.0 - error

    # -- triggers -----------------------------------------------------------------------------------------

    def _start_baseline(self) -> None:
        self.monitor.reset()
        self.examples = 0
        self._seen = 0
        self._rolling_sum = 0.0
        self._reference_error_sum = 0.0
        for i in range(len(self._rolling)):
            self._rolling[i] = 0.0
        self._rising: dict[str, Detection] = {}
        self._cooldown: _Cooldown | None = None
        self.last_feature_detections: list[tuple[str, Detection]] = []
        if self.features is not None:
            self.features.reset()

    def _cooling_down(self, clock: float) -> bool:
        if self._cooldown is None:
            return False
        if (
            self.examples - self._cooldown.examples_at >= self.config.cooldown_examples
            or clock - self._cooldown.time_at >= self.config.cooldown_s
        ):
            self._cooldown = None
            self._rising.clear()
            return False
        return True

    def _drift_event(self, example: LabeledExample) -> RetrainEvent | None:
        now_index = self.monitor.n - 1
        agreeing = [d for d in self._rising.values() if now_index - d.index < self.config.agreement_window]
        if len(agreeing) < self.config.drift_quorum:
            return None
        agreeing.sort(key=lambda d: d.index)
        last = agreeing[-1]
        # The narrowest post-change window any detector vouches for, ADWIN's when it is among them.
        adwin = [d for d in agreeing if d.detector == "ADWIN"]
        anchor = adwin[-1] if adwin else last
        window = anchor.window_width + (now_index - anchor.index)
        self._rising.clear()
        return self._event(
            example,
            RetrainReason.DRIFT,
            detector=last.detector,
            evidence=Evidence(
                metric=self._metric_name,
                before=anchor.before,
                after=anchor.after,
                window_width=window,
                examples_seen=self.examples,
                detectors=[d.detector for d in agreeing],
            ),
            window=max(1, window),
        )

    def _performance_event(self, example: LabeledExample) -> RetrainEvent | None:
        config = self.config
        if self._seen < config.performance_window:
            return None
        error = self.rolling_error
        assert error is not None
        if config.task == "classification":
            accuracy = 1.0 - error
            reference_size = config.reference_windows * config.performance_window
            if self.reference_accuracy is None and self._seen >= reference_size:
                # No validation score from the trainer: the accuracy over the first `reference_windows` windows
                # after promotion is the reference (one window alone is too noisy: +-0.02 at 500 examples).
                self.reference_accuracy = 1.0 - self._reference_error_sum / reference_size
            relative = (
                config.relative_drop * self.reference_accuracy
                if config.relative_drop is not None and self.reference_accuracy is not None
                else None
            )
            floor = [f for f in (config.min_accuracy, relative) if f is not None]
            if not floor or accuracy >= max(floor):
                return None
            threshold, value, rule = max(floor), accuracy, "accuracy"
        else:
            if config.max_error is None or error <= config.max_error:
                return None
            threshold, value, rule = config.max_error, error, "mae"
        return self._event(
            example,
            RetrainReason.PERFORMANCE,
            detector=f"rolling_{rule}",
            evidence=Evidence(
                metric=rule,
                before=self.reference_accuracy if rule == "accuracy" else None,
                after=value,
                window_width=config.performance_window,
                examples_seen=self.examples,
                values={"threshold": threshold},
            ),
            window=config.performance_window,
        )

    def _volume_event(self, example: LabeledExample) -> RetrainEvent | None:
        cold = self.version == 0
        needed = self.config.cold_start_examples if cold else self.config.volume_examples
        if needed is None or self.examples < needed:
            return None
        return self._event(
            example,
            RetrainReason.DATA_VOLUME,
            detector="cold_start" if cold else "data_volume",
            evidence=Evidence(examples_seen=self.examples, values={"threshold": float(needed)}),
            window=self.examples,
        )

    @property
    def _metric_name(self) -> str:
        return "error_rate" if self.config.task == "classification" else "mae"

    def _event(
        self, example: LabeledExample, reason: RetrainReason, *, detector: str, evidence: Evidence, window: int
    ) -> RetrainEvent:
        return RetrainEvent(
            model_id=self.model_id,
            reason=reason,
            detector=detector,
            detected_at=example.label_timestamp,
            model_version=self.version,
            evidence=evidence,
            suggested_window=TrainingWindow(last_n=window),
        )
