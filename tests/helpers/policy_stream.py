"""Labeled examples whose errors follow set rates, for the policy's unit tests."""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, timedelta

from retrain.schemas import LabeledExample

Segments = tuple[tuple[float, int], ...]

T0 = datetime(2024, 6, 1, tzinfo=UTC)

SEED = 1


@functools.cache
def stream(seed: int, segments: Segments, version: int = 1, start: int = 0) -> tuple[tuple[LabeledExample, ...], ...]:
    """Labeled examples whose 0/1 errors follow Bernoulli(p) for each (p, count) segment, 1 s apart.

    Returns (examples, errors) where errors[i] is the error drawn for examples[i].
    """
    rng = random.Random(seed)
    examples, drawn = [], []
    i = start
    for p, count in segments:
        for _ in range(count):
            error = int(rng.random() < p)
            label = rng.randrange(2)
            ts = T0 + timedelta(seconds=i)
            examples.append(
                LabeledExample(
                    prediction_id=f"v{version}-{i}",
                    model_id="churn",
                    model_version=version,
                    features={"x": float(i % 7)},
                    prediction=1 - label if error else label,
                    label=label,
                    prediction_timestamp=ts,
                    label_timestamp=ts,
                )
            )
            drawn.append(error)
            i += 1
    return tuple(examples), tuple(drawn)
