"""What the scorer serves, and how it scores a batch: no Kafka.

A :class:`ServedModel` is one model's version in service: a verified :class:`FittedModel` loaded from the
registry (:func:`retrain.registry.loading.load_version`), or, before the model's first promotion, nothing
(version 0), in which case the configured fallback prediction answers. :func:`score_batch` makes one ``predict``
call for a whole batch (per-row scikit-learn calls are about 100 times slower); when that call raises, it splits
the batch in halves until the rows that make it raise are isolated, so one unusable request costs its own
prediction and no one else's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrain.decisions.features import Row
from retrain.decisions.training import FittedModel

Prediction = bool | int | float | str


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    version: int  # 0: no promoted version yet, the fallback answers
    model: FittedModel | None = None
    sha256: str | None = None

    @property
    def is_fallback(self) -> bool:
        return self.model is None


@dataclass(frozen=True)
class RowResult:
    """The prediction for one row, or why the model could not score it; ``mistyped``: the features scored as
    missing because their type is not the one the version was trained on (a string where it saw numbers)."""

    prediction: Any = None
    error: str | None = None
    mistyped: tuple[str, ...] = ()


def score_batch(served: ServedModel, rows: Sequence[Row], fallback: Prediction) -> list[RowResult]:
    """One result per row, in order: the model's predictions (one ``predict`` call when nothing fails)."""
    if served.model is None:
        return [RowResult(fallback) for _ in rows]
    return _score(served.model, list(rows))


def _score(model: FittedModel, rows: list[Row]) -> list[RowResult]:
    if not rows:
        return []
    try:
        predictions, mistyped = model.predict_encoded(rows)
        if len(predictions) != len(rows):
            raise ValueError(f"predict returned {len(predictions)} predictions for {len(rows)} rows")
        results = [RowResult(prediction) for prediction in predictions]
        for index, name in mistyped:
            results[index] = RowResult(results[index].prediction, mistyped=(*results[index].mistyped, name))
        return results
    except Exception as error:  # the estimator's own errors, whatever their class
        if len(rows) == 1:
            return [RowResult(error=f"{type(error).__name__}: {error}")]
    middle = len(rows) // 2
    return _score(model, rows[:middle]) + _score(model, rows[middle:])
