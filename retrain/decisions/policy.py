"""When to ask for a retrain: drift, performance, data volume, with one event per episode. Pure Python.

A :class:`ModelWatch` follows one model: it turns each labeled example into an error, feeds the drift
monitor and the rolling metric, counts examples since the last model, and decides. After it asks, it stays
quiet (cooldown) until the model is updated, or enough examples or time have passed. When a new version is
promoted it starts a fresh baseline and ignores the errors of older versions that arrive after the swap.

Retraining right after a detection trains mostly on the *old* concept, and the new model can end up worse than
never retraining. So a drift (or a drop of accuracy) opens an :class:`Episode` at the estimated change point,
and the episode asks for fits on the examples since that point only: the first once ``refit_first`` of them
exist, then again as they grow (times ``refit_growth``) until ``refit_until`` (the window is full). A later
refit is skipped when the model in service is already back to its error from before the change.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from retrain.decisions.drift import (
    Detection,
    DriftMonitor,
    change_point,
    example_error,
    proportion_rise_z,
    rise_z,
)
from retrain.decisions.episode import (  # Episode: also found here by snapshots pickled before it moved
    Episode,
    cold_start_episode,
    drift_episode,
    performance_episode,
    validation_episode,
)
from retrain.decisions.feature_drift import FeatureDriftMonitor, feature_drift_event
from retrain.decisions.policy_config import PolicyConfig  # also found here by snapshots pickled before it moved
from retrain.decisions.ring import ErrorRing
from retrain.decisions.triggers import drift_event, performance_event, performance_limit, volume_event
from retrain.schemas import (
    Evidence,
    LabeledExample,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    StreamPosition,
)


class ServedVersion(NamedTuple):
    """A model's version in service and its validation (the trainer's holdout accuracy and size), from its update."""

    version: int
    accuracy: float | None = None
    holdout: int | None = None


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
        self.validation_accuracy: float | None = None  # the trainer's score of the version in service
        self.validation_holdout: int | None = None  # the number of holdout examples behind that score
        self.position = 0  # labeled examples of this model so far, every version: never reset
        self.last_change_at = 0  # position of the last confident change (the stream's start until one is found)
        self.episode: Episode | None = None
        self.opened: Episode | None = None  # the episode the last observe opened, if any
        self.features = (
            FeatureDriftMonitor(self.config.feature_detector, self.config.feature_limit)
            if self.config.feature_detector is not None
            else None
        )
        self.monitor = DriftMonitor(self.config.detectors, self.config.task) if self.config.detectors else None
        # 0/1 errors are packed as bits (see ErrorRing): the history is most of a watch's memory.
        self._rolling = ErrorRing(self.config.performance_window)
        self._history = ErrorRing(self.config.change_history)
        self._start_baseline()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a snapshot): the error windows come as float arrays, packed again here."""
        self.__dict__.setdefault("last_change_at", 0)
        self.__dict__.setdefault("validation_holdout", None)
        self.__dict__.update(state)
        for name in ("_rolling", "_history"):
            if isinstance(self.__dict__[name], array):
                setattr(self, name, ErrorRing.of(self.__dict__[name]))

    # -- input --------------------------------------------------------------------------------------------

    def model_updated(self, version: int, accuracy: float | None = None, holdout: int | None = None) -> None:
        """A new version is in service: fresh detectors, fresh metric, cooldown over.

        ``accuracy`` (the trainer's validation score on ``holdout`` examples) is used once, by the validation gap
        (``validation_rise_z``); the other rules compare against the accuracy measured live after the swap, which a
        small holdout often overstates.
        """
        self.version = version
        self.validation_accuracy = accuracy
        self.validation_holdout = holdout
        self.reference_accuracy = None
        self._start_baseline()

    def observe(
        self, example: LabeledExample, position: StreamPosition | None = None, now: datetime | None = None
    ) -> RetrainEvent | None:
        """Account for one labeled example; return a retrain event when one is due."""
        index = self.position
        self.position += 1
        self.opened = None
        self.last_detections = []
        if example.model_version < self.version:
            self.ignored_stale += 1  # an old version's error after the swap: not this model's baseline
            return self._with_position(self._refit_event(example, index), position)  # still post-change data
        if example.model_version > self.version:
            self.model_updated(example.model_version)  # we missed the update event: adopt the version
        error = example_error(example.prediction, example.label, self.config.task)
        self.examples += 1
        slot = self._seen % self.config.performance_window
        self._rolling_sum += error - self._rolling[slot]
        self._rolling[slot] = error
        self._history[self._seen % self.config.change_history] = error
        self._seen += 1
        if self._seen <= self.config.reference_windows * self.config.performance_window:
            self._reference_error_sum += error
        if self.monitor is not None:
            detections = [d for d in self.monitor.update(error) if d.rising]
            self.last_detections = detections
            for detection in detections:
                self._rising[detection.detector] = detection
        clock = (now or example.label_timestamp).timestamp()
        event = self._refit_event(example, index)
        if event is None and not self._cooling_down(clock):
            if self.config.post_change_training and self.version > 0:
                self.opened = (
                    self._drift_episode(index) or self._performance_episode(index) or self._validation_episode(index)
                )
                if self.opened is not None:
                    self.episode = self.opened
                    self._cooldown = _Cooldown(self.examples, clock)
                    event = self._refit_event(example, index)
            elif self.version > 0:
                event = self._naive_event(example)
            if event is None and self.opened is None and self.version == 0 and self.config.post_change_training:
                self.opened = self._cold_start_episode(index)
                if self.opened is not None:
                    self.episode = self.opened
                    self._cooldown = _Cooldown(self.examples, clock)
                    event = self._refit_event(example, index)
            if event is None and self.opened is None:
                event = self._volume_event(example)
            if event is not None and self.opened is None:
                self._cooldown = _Cooldown(self.examples, clock)
        return self._with_position(event, position)

    def open_episode(self, change_at: int, detector: str = "oracle", reason: RetrainReason = RetrainReason.DRIFT):
        """Open an episode at a change point known from outside (the oracle of ``retrain evaluate``)."""
        self.episode = self.opened = Episode(
            change_at,
            self.position,
            reason,
            detector,
            [detector],
            self.rolling_error,
            self.version,
            self.config.refit_sizes(),
        )
        return self.episode

    @staticmethod
    def _with_position(event: RetrainEvent | None, position: StreamPosition | None) -> RetrainEvent | None:
        if event is None or position is None:
            return event
        return event.model_copy(update={"evidence": event.evidence.model_copy(update={"position": position})})

    def observe_prediction(self, prediction: PredictionEvent) -> RetrainEvent | None:
        """Label-free: feed a prediction's features to the feature detectors (when configured)."""
        if self.features is None or prediction.model_version < self.version:
            return None
        changed = self.features.update(prediction.features)
        self.last_feature_detections = changed
        if not changed or self._cooling_down(prediction.timestamp.timestamp()):
            return None
        event = feature_drift_event(self.model_id, self.version, prediction.timestamp, changed, self.examples)
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
        if self.monitor is not None:
            self.monitor.reset()
        self.examples = 0
        self._seen = 0
        self._rolling_sum = 0.0
        self._reference_error_sum = 0.0
        self._rolling.zero()
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

    def _agreeing(self) -> list[Detection]:
        assert self.monitor is not None
        if not self._rising:
            return []
        now_index = self.monitor.n - 1
        agreeing = [d for d in self._rising.values() if now_index - d.index < self.config.agreement_window]
        return sorted(agreeing, key=lambda d: d.index) if len(agreeing) >= self.config.drift_quorum else []

    def _drift_episode(self, index: int) -> Episode | None:
        agreeing = self._agreeing() if self.monitor is not None else []
        if not agreeing:
            return None
        self._rising.clear()
        return drift_episode(self._recent_errors(), index, agreeing, self.version, self.config.refit_sizes())

    def _validation_episode(self, index: int) -> Episode | None:
        """At the version's first full window, once: its served error is above its validation error beyond noise."""
        config = self.config
        if config.validation_rise_z is None or self._seen != config.performance_window:
            return None
        if config.task != "classification" or self.validation_accuracy is None or not self.validation_holdout:
            return None
        validated, served = 1.0 - self.validation_accuracy, self.rolling_error
        assert served is not None
        z = proportion_rise_z(validated, self.validation_holdout, served, config.performance_window)
        if z < config.validation_rise_z:
            return None
        return validation_episode(index, self._seen, validated, self.version, config.refit_sizes())

    def _cold_start_episode(self, index: int) -> Episode | None:
        if self.position < self.config.cold_start_examples:
            return None
        return cold_start_episode(index, self.config.cold_start_examples, self.config.refit_until)

    def _performance_episode(self, index: int) -> Episode | None:
        fired = self._performance_check()
        if fired is None:
            return None
        reference = self.reference_accuracy if fired[0] == "accuracy" else None
        errors = self._recent_errors()
        return performance_episode(errors, index, fired[0], reference, self.version, self.config.refit_sizes())

    def _refine(self, episode: Episode, index: int) -> None:
        if self.version != episode.version_at_open or episode.detector == "oracle":
            return  # another model's errors since: they say nothing about this change
        errors = self._recent_errors()
        first = index + 1 - len(errors)  # the position of errors[0]
        if first >= episode.change_at:
            return  # the history no longer reaches back before the change
        episode.change_at = first + change_point(errors)

    def _recent_errors(self) -> list[float]:
        """This version's errors, oldest first: all of them, or the last ``change_history``."""
        size = self.config.change_history
        if self._seen <= size:
            return list(self._history[: self._seen])
        cut = self._seen % size
        return list(self._history[cut:]) + list(self._history[:cut])

    def _recovered(self, episode: Episode) -> bool:
        """The model in service is a refit of this episode and is back to the error from before the change."""
        margin = self.config.recovered_margin
        if margin is None or episode.before_error is None or self.version <= episode.version_at_open:
            return False
        if self._seen < self.config.performance_window:
            return False
        error = self.rolling_error
        return error is not None and error <= episode.before_error + margin

    def _refit_event(self, example: LabeledExample, index: int) -> RetrainEvent | None:
        episode = self.episode
        if episode is None:
            return None
        post_change = episode.due(index)
        if post_change is None:
            return None
        if not episode.refined:
            # Detected early, the change point is estimated from a few post-change errors (CUSUM is then off by
            # hundreds). When the first fit is due, the same model's errors since then locate it far better.
            episode.refined = True
            self._refine(episode, index)
            post_change = episode.due(index)
            if post_change is None:
                return None
            episode.confident = self._confident(episode, index)
            if episode.confident and episode.reason is not RetrainReason.DATA_VOLUME:
                self.last_change_at = episode.change_at
        judging = (
            episode.fits > 0 and self.version > episode.version_at_open and self.config.recovered_margin is not None
        )
        if judging and self._seen < self.config.performance_window:
            return None  # a refit of this episode is in service: judge it on a full window before asking again
        if episode.fits > 0 and self._recovered(episode):
            self.episode = None  # back to where it was before the change: no more fits for this episode
            return None
        episode.take(post_change)
        window = min(post_change, self.config.refit_until)
        if episode.reason is RetrainReason.DATA_VOLUME:
            window = post_change  # the cold start: everything there is
        elif not episode.confident:
            episode.fits = len(episode.sizes)  # one fit, on more data: no change to refit after
            window = index + 1 - self.last_change_at
        if episode.finished:
            self.episode = None
        return episode.event(
            self.model_id,
            self.version,
            example.label_timestamp,
            Evidence(
                metric=self._metric_name,
                before=episode.before_error,
                after=self.rolling_error,
                window_width=post_change,
                examples_seen=self.examples,
                detectors=episode.detectors,
            ),
            position=index,
            window=window,
        )

    def _confident(self, episode: Episode, index: int) -> bool:
        """The error after the episode's change point is above the error before it, beyond noise."""
        threshold = self.config.confident_rise_z
        if threshold is None or episode.reason is RetrainReason.DATA_VOLUME or episode.detector == "oracle":
            return True
        if self.version != episode.version_at_open:
            return True  # another version's errors since: the detection stands
        errors = self._recent_errors()
        split = episode.change_at - (index + 1 - len(errors))
        if not 0 < split < len(errors):
            return True  # the history no longer holds both sides
        return rise_z(errors[:split], errors[split:]) >= threshold

    def _naive_event(self, example: LabeledExample) -> RetrainEvent | None:
        """The naive rule (post_change_training off): a drift or the rolling metric past its limit asks at once."""
        agreeing = self._agreeing() if self.monitor is not None else []
        if agreeing:
            assert self.monitor is not None
            self._rising.clear()
            return drift_event(
                self.model_id,
                self.version,
                example.label_timestamp,
                agreeing,
                now_index=self.monitor.n - 1,
                metric=self._metric_name,
                examples_seen=self.examples,
            )
        fired = self._performance_check()
        if fired is None:
            return None
        return performance_event(
            self.model_id,
            self.version,
            example.label_timestamp,
            fired,
            reference_accuracy=self.reference_accuracy,
            config=self.config,
            examples_seen=self.examples,
        )

    def _performance_check(self) -> tuple[str, float, float] | None:
        """(rule, threshold, value) once a full window is seen and its metric is past the limit, else None."""
        config = self.config
        if self._seen < config.performance_window:
            return None
        error = self.rolling_error
        assert error is not None
        reference_size = config.reference_windows * config.performance_window
        if config.task == "classification" and self.reference_accuracy is None and self._seen >= reference_size:
            # The accuracy over the first `reference_windows` windows after promotion is the reference (one window
            # alone is too noisy: +-0.02 at 500 examples).
            self.reference_accuracy = 1.0 - self._reference_error_sum / reference_size
        return performance_limit(config, error, self.reference_accuracy)

    def _volume_event(self, example: LabeledExample) -> RetrainEvent | None:
        cold = self.version == 0
        needed = self.config.cold_start_examples if cold else self.config.volume_examples
        if needed is None or self.examples < needed:
            return None
        return volume_event(
            self.model_id,
            self.version,
            example.label_timestamp,
            needed=needed,
            examples_seen=self.examples,
            since_change=self.position - self.last_change_at,
            trusted=cold or not self.config.post_change_training,
        )

    @property
    def _metric_name(self) -> str:
        return "error_rate" if self.config.task == "classification" else "mae"
