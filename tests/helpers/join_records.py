"""Predictions and labels for the join's unit tests, their event times counted in seconds from T0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from retrain.schemas import LabelEvent, PredictionEvent


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def label(pid: str, seconds: float = 0.0, *, value: int | str = 0, model: str = "churn") -> LabelEvent:
    return LabelEvent(prediction_id=pid, model_id=model, label=value, timestamp=at(seconds))


def prediction(
    pid: str, seconds: float = 0.0, *, version: int = 4, value: int | str = 1, model: str = "churn"
) -> PredictionEvent:
    return PredictionEvent(
        prediction_id=pid,
        model_id=model,
        model_version=version,
        features={"tenure": 12.0, "spend": 3.5},
        prediction=value,
        timestamp=at(seconds),
    )
