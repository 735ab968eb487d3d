"""Streams only the tests use: predictions with a feature shift, labeled examples of the scored SEA stream."""

from __future__ import annotations

import random
from datetime import timedelta

from retrain.producers.scored import START, sea_model, sea_stream
from retrain.schemas import LabeledExample, PredictionEvent


def shifted_feature_predictions(n: int, shift_at: int, model_id: str, seed: int = 3) -> list[PredictionEvent]:
    """Predictions whose feature x0 moves from uniform [0, 10) to [5, 10) at ``shift_at``; no labels."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        low = 5.0 if i >= shift_at else 0.0
        out.append(
            PredictionEvent(
                prediction_id=f"{model_id}-{i}",
                model_id=model_id,
                model_version=1,
                features={"x0": rng.uniform(low, 10), "x1": rng.uniform(0, 10), "x2": rng.uniform(0, 10)},
                prediction=1,
                timestamp=START + timedelta(seconds=i),
            )
        )
    return out


def labeled(model_id: str, n: int, *, variant_after: int | None, seed: int, start: int = 0) -> list[LabeledExample]:
    stream = sea_stream(sea_model(), n=n, drift_at=variant_after, model_id=model_id, seed=seed)
    return [s.joined(f"{s.prediction.prediction_id}-{start}") for s in stream]
