"""The immediate triggers: a drift the detectors agree on, the rolling metric past its limit, enough new data.

With ``post_change_training`` off (the naive rule) drifts and limits ask at once, for the trainer's default window;
the default policy opens an episode instead (:mod:`retrain.decisions.policy`) and uses only the volume trigger.
"""

from __future__ import annotations

from datetime import datetime

from retrain.decisions.drift import Detection
from retrain.decisions.episode import STALE
from retrain.decisions.policy_config import PolicyConfig
from retrain.schemas import Evidence, RetrainEvent, RetrainReason, TrainingWindow


def retrain_event(
    model_id: str,
    version: int,
    detected_at: datetime,
    reason: RetrainReason,
    *,
    detector: str,
    evidence: Evidence,
    window: int | None,
) -> RetrainEvent:
    """A retrain event; ``window`` None leaves the window to the trainer's default."""
    return RetrainEvent(
        model_id=model_id,
        reason=reason,
        detector=detector,
        detected_at=detected_at,
        model_version=version,
        evidence=evidence,
        suggested_window=None if window is None else TrainingWindow(last_n=window),
    )


def drift_event(
    model_id: str,
    version: int,
    detected_at: datetime,
    agreeing: list[Detection],
    *,
    now_index: int,
    metric: str,
    examples_seen: int,
) -> RetrainEvent:
    """A drift the detectors agree on (oldest first), with the narrowest post-change window any of them vouches
    for as evidence: ADWIN's when it is among them."""
    last = agreeing[-1]
    adwin = [d for d in agreeing if d.detector == "ADWIN"]
    anchor = adwin[-1] if adwin else last
    evidence = Evidence(
        metric=metric,
        before=anchor.before,
        after=anchor.after,
        window_width=anchor.window_width + (now_index - anchor.index),
        examples_seen=examples_seen,
        detectors=[d.detector for d in agreeing],
    )
    return retrain_event(
        model_id, version, detected_at, RetrainReason.DRIFT, detector=last.detector, evidence=evidence, window=None
    )


def performance_limit(
    config: PolicyConfig, error: float, reference_accuracy: float | None
) -> tuple[str, float, float] | None:
    """(rule, threshold, value) when the rolling metric is past its limit, else None."""
    if config.task == "classification":
        accuracy = 1.0 - error
        relative = (
            config.relative_drop * reference_accuracy
            if config.relative_drop is not None and reference_accuracy is not None
            else None
        )
        floor = [f for f in (config.min_accuracy, relative) if f is not None]
        if not floor or accuracy >= max(floor):
            return None
        return "accuracy", max(floor), accuracy
    if config.max_error is None or error <= config.max_error:
        return None
    return "mae", config.max_error, error


def performance_event(
    model_id: str,
    version: int,
    detected_at: datetime,
    fired: tuple[str, float, float],
    *,
    reference_accuracy: float | None,
    config: PolicyConfig,
    examples_seen: int,
) -> RetrainEvent:
    """The rolling metric past its limit (``fired`` from :func:`performance_limit`)."""
    rule, threshold, value = fired
    evidence = Evidence(
        metric=rule,
        before=reference_accuracy if rule == "accuracy" else None,
        after=value,
        window_width=config.performance_window,
        examples_seen=examples_seen,
        values={"threshold": threshold},
    )
    return retrain_event(
        model_id,
        version,
        detected_at,
        RetrainReason.PERFORMANCE,
        detector=f"rolling_{rule}",
        evidence=evidence,
        window=None,
    )


def volume_event(
    model_id: str,
    version: int,
    detected_at: datetime,
    *,
    needed: int,
    examples_seen: int,
    since_change: int,
    trusted: bool,
) -> RetrainEvent:
    """Enough new examples. A cold start (version 0) trains on all it has; later, a trusted trigger (the naive
    rule) takes the trainer's default window, and the default policy every example since the last confident change
    and asks for evidence before promotion."""
    cold = version == 0
    window = examples_seen if cold else None if trusted else since_change
    return retrain_event(
        model_id,
        version,
        detected_at,
        RetrainReason.DATA_VOLUME,
        detector="cold_start" if cold else "data_volume",
        evidence=Evidence(
            examples_seen=examples_seen, values={"threshold": float(needed), STALE: 1.0 if trusted else 0.0}
        ),
        window=window,
    )
