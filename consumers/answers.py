"""The trainer's answers: a challenger registered (and promoted if it won) becomes a ``ModelUpdatedEvent``,
carrying its retrain event's trace, with the retrain loop's stages timed from that trace."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from retrain.consumers.fitting import Fit
from retrain.consumers.metrics import TrainerMetrics
from retrain.decisions.training import TrainingConfig, TrainingOutcome, rejection
from retrain.registry import ModelVersionInfo, Registry
from retrain.schemas import ModelUpdatedEvent, RetrainEvent, RetrainTrace, UpdateOutcome

log = logging.getLogger("retrain.consumers.trainer")  # the trainer's log lines, under the trainer's name


class Answers:
    def __init__(self, registry: Registry, config: TrainingConfig, metrics: TrainerMetrics) -> None:
        self.registry = registry
        self.config = config
        self.metrics = metrics

    def register(self, fit: Fit, outcome: TrainingOutcome) -> ModelUpdatedEvent:
        model_id, event = fit.event.model_id, fit.event
        info = self.registry.register(
            model_id,
            outcome.challenger,
            n_samples=fit.n_samples,
            metrics={**outcome.metrics, "promote_decision": 1.0 if outcome.promote else 0.0},
            training_window={
                "n_samples": fit.n_samples,
                "first_label_timestamp": fit.first.isoformat() if fit.first else None,
                "last_label_timestamp": fit.last.isoformat() if fit.last else None,
            },
            trigger_event_id=event.event_id,
            reason=event.reason.value,
        )
        if outcome.promote:
            info = self.registry.promote(model_id, info.version)
        detail = None if outcome.promote else rejection(outcome, self.config)
        return self.answer(event, info, fit.champion, promoted=outcome.promote, detail=detail)

    def failed(self, event: RetrainEvent, fit: Fit | None, reason: str, message: str) -> ModelUpdatedEvent:
        """No new version: the champion stays, and the event says why."""
        self.metrics.outcomes.labels(event.model_id, UpdateOutcome.FAILED.value).inc()
        return self._record(
            ModelUpdatedEvent(
                event_id=f"{event.event_id}-outcome",
                model_id=event.model_id,
                promoted=False,
                outcome=UpdateOutcome.FAILED,
                previous_version=fit.champion.version if fit is not None and fit.champion else None,
                n_samples=fit.n_samples if fit is not None else None,
                trigger_event_id=event.event_id,
                detail=f"{reason}: {message}"[:2048],
                trace=event.trace,
            )
        )

    def answer(
        self,
        event: RetrainEvent,
        info: ModelVersionInfo,
        champion: ModelVersionInfo | None,
        *,
        promoted: bool,
        detail: str | None,
    ) -> ModelUpdatedEvent:
        outcome = UpdateOutcome.PROMOTED if promoted else UpdateOutcome.REJECTED
        self.metrics.outcomes.labels(info.model_id, outcome.value).inc()
        if promoted:
            self.metrics.version.labels(info.model_id).set(info.version)
        self.metrics.last_retrain.labels(info.model_id).set(time.time())
        previous = champion.version if champion is not None and champion.version != info.version else None
        return self._record(
            ModelUpdatedEvent(
                event_id=f"{event.event_id}-outcome",
                model_id=info.model_id,
                version=info.version,
                previous_version=previous,
                promoted=promoted,
                outcome=outcome,
                metrics=info.metrics,
                n_samples=info.n_samples,
                artifact_uri=info.artifact_uri,
                sha256=info.sha256,
                trigger_event_id=event.event_id,
                detail=detail,
                trace=event.trace,
            )
        )

    def observe(self, stage: str, start: datetime | float | None, end: datetime | float | None) -> None:
        if start is None or end is None:
            return
        seconds = _seconds(end) - _seconds(start)
        self.metrics.stages.labels(stage).observe(max(0.0, seconds))  # clocks of two machines may disagree

    def _record(self, update: ModelUpdatedEvent) -> ModelUpdatedEvent:
        if update.trace is not None:
            self.observe("registered", update.trace.fit_finished, update.updated_at)
        log.info("%s: %s version %s (%s)", update.model_id, update.outcome.value, update.version, update.detail)
        return update


def stamp(event: RetrainEvent, **moments: datetime) -> RetrainEvent:
    """``event`` with more of its trace: the moments the trainer saw it reach."""
    trace = (event.trace or RetrainTrace()).model_copy(update=moments)
    return event.model_copy(update={"trace": trace})


def _seconds(moment: datetime | float) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else moment
