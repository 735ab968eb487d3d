"""An episode: a change the policy retrains for, from its change point through the refits it still owes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from retrain.decisions.drift import Detection, change_point
from retrain.schemas import Evidence, RetrainEvent, RetrainReason, TrainingWindow

# evidence.values key of a retrain event: 1 when the champion is known to be stale (a confident change, a cold
# start, a trusted trigger), 0 when a challenger must beat it beyond noise. Events without it are trusted.
STALE = "champion_stale"
# The detector name of an episode opened because a version serves worse than it validated (see validation_episode).
VALIDATION_GAP = "validation_gap"


@dataclass
class Episode:
    """A change the watch retrains for: where it began, where it was detected, which fits are still to come.

    Positions count every labeled example of the model (whichever version predicted it), from 0.
    """

    change_at: int
    detected_at: int
    reason: RetrainReason
    detector: str
    detectors: list[str]
    before_error: float | None  # the error before the change: the mark of recovery
    version_at_open: int
    sizes: tuple[int, ...]
    fits: int = 0
    refined: bool = False  # change_at re-estimated with the errors that followed the detection
    confident: bool = True  # judged at the first fit: the error rose beyond noise at change_at

    def due(self, position: int) -> int | None:
        """The post-change window of the next fit if it is due at ``position``, else None."""
        if self.fits >= len(self.sizes):
            return None
        post_change = position + 1 - self.change_at
        return post_change if post_change >= self.sizes[self.fits] else None

    def take(self, post_change: int) -> None:
        """A fit on ``post_change`` examples was asked for: it stands for every size it has reached."""
        while self.fits < len(self.sizes) and self.sizes[self.fits] <= post_change:
            self.fits += 1

    @property
    def finished(self) -> bool:
        return self.fits >= len(self.sizes)

    def event(
        self, model_id: str, version: int, detected_at: datetime, evidence: Evidence, *, position: int, window: int
    ) -> RetrainEvent:
        """The retrain event of this episode's latest fit: where the change began and was detected, which fit it
        is, and whether the champion is known to be stale (a confident change)."""
        values = {
            "change_at": float(self.change_at),
            "detected_at": float(self.detected_at),
            "position": float(position),
            "refit": float(self.fits),
            STALE: 1.0 if self.confident else 0.0,
        }
        return RetrainEvent(
            model_id=model_id,
            reason=self.reason,
            detector=self.detector,
            detected_at=detected_at,
            model_version=version,
            evidence=evidence.model_copy(update={"values": values}),
            suggested_window=TrainingWindow(last_n=window),
        )


def drift_episode(
    errors: list[float], index: int, agreeing: list[Detection], version: int, sizes: tuple[int, ...]
) -> Episode:
    """A drift the detectors agree on (oldest first), detected at ``index``: the change point is estimated from the
    version's recent ``errors`` (the last is ``index``'s), and their mean before it is the mark of recovery."""
    start = change_point(errors)
    before = errors[:start]
    return Episode(
        change_at=index + 1 - (len(errors) - start),
        detected_at=index,
        reason=RetrainReason.DRIFT,
        detector=agreeing[-1].detector,
        detectors=[d.detector for d in agreeing],
        before_error=sum(before) / len(before) if before else None,
        version_at_open=version,
        sizes=sizes,
    )


def performance_episode(
    errors: list[float], index: int, rule: str, reference: float | None, version: int, sizes: tuple[int, ...]
) -> Episode:
    """The rolling metric past its limit at ``index``; the reference accuracy (if any) is the mark of recovery."""
    return Episode(
        change_at=index + 1 - (len(errors) - change_point(errors)),
        detected_at=index,
        reason=RetrainReason.PERFORMANCE,
        detector=f"rolling_{rule}",
        detectors=[f"rolling_{rule}"],
        before_error=None if reference is None else 1.0 - reference,
        version_at_open=version,
        sizes=sizes,
    )


def validation_episode(
    index: int, served: int, validated_error: float, version: int, sizes: tuple[int, ...]
) -> Episode:
    """The version's first ``served`` errors are above its validation error beyond noise: the change came before it
    went into service, so the episode starts at its first served example; its validation error marks recovery."""
    return Episode(
        change_at=index + 1 - served,
        detected_at=index,
        reason=RetrainReason.PERFORMANCE,
        detector=VALIDATION_GAP,
        detectors=[VALIDATION_GAP],
        before_error=validated_error,
        version_at_open=version,
        sizes=sizes,
    )


def cold_start_episode(index: int, first: int, refit_until: int) -> Episode:
    """No model yet: fit on everything once there are ``first`` examples, and again once the window is full."""
    sizes = (first,) if first >= refit_until else (first, refit_until)
    return Episode(0, index, RetrainReason.DATA_VOLUME, "cold_start", ["cold_start"], None, 0, sizes)
