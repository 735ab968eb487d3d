"""The retrain policy's settings: triggers, cooldown, post-change refits, confidence. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass

from retrain.decisions.drift import DEFAULT_DETECTORS, DetectorSpec, Task


@dataclass(frozen=True)
class PolicyConfig:
    task: Task = "classification"
    detectors: tuple[DetectorSpec, ...] = DEFAULT_DETECTORS
    # Drift fires when this many of the detectors report a rise within `agreement_window` examples.
    drift_quorum: int = 1
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
    # Post-change training: a degradation opens an episode that asks for fits on the examples since the change.
    # Off, it asks at once for the trainer's default window (the naive rule, kept for comparisons).
    post_change_training: bool = True
    refit_first: int = 1_500
    refit_growth: float = 2.5
    refit_until: int = 5_000
    # Skip an episode's later refits once the rolling error is within this of the error before the change.
    recovered_margin: float | None = 0.02
    # Errors kept (per model, since its version went into service) to locate the change point of an episode.
    change_history: int = 10_000
    # A change is confident when the error after its change point exceeds the error before by this many standard
    # errors (at the episode's first fit). Then the champion is known to be stale: fits use the examples since the
    # change and a challenger needs only to tie. Otherwise (and for data-volume retrains) a fit uses every example
    # since the last confident change, and the trainer promotes only a challenger better beyond its holdout's
    # noise. None: every detected change is confident.
    confident_rise_z: float | None = 3.0
    # A version whose error over its first `performance_window` served examples is above its validation error (the
    # trainer's holdout) by this many standard errors was stale when it went into service: an episode opens at its
    # first served example. Classification; None: off.
    validation_rise_z: float | None = 4.0

    def __post_init__(self) -> None:
        if self.detectors and not 1 <= self.drift_quorum <= len(self.detectors):
            raise ValueError(f"drift_quorum must be between 1 and the number of detectors ({len(self.detectors)})")
        if min(self.performance_window, self.agreement_window, self.cold_start_examples, self.reference_windows) < 1:
            raise ValueError("windows and counts must be positive")
        if self.change_history < 2:
            raise ValueError("change_history must be at least 2")
        if not 1 <= self.refit_first <= self.refit_until or self.refit_growth <= 1:
            raise ValueError("need 1 <= refit_first <= refit_until and refit_growth > 1")
        if self.relative_drop is not None and not 0 < self.relative_drop < 1:
            raise ValueError("relative_drop must be between 0 and 1")

    def refit_sizes(self) -> tuple[int, ...]:
        """Post-change example counts at which an episode asks for a fit: first, growing, until the window is full."""
        sizes, size = [], float(self.refit_first)
        while size < self.refit_until:
            sizes.append(int(size))
            size *= self.refit_growth
        return (*sizes, self.refit_until)
