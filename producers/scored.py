"""A scored stream for benchmarks and tests: River's SEA generator, predicted by a fixed scikit-learn tree, with
each prediction's label 30 s later (optionally shuffled within blocks: late and out of order)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from river.datasets import synth
from sklearn.tree import DecisionTreeClassifier

from retrain.schemas import LabeledExample, LabelEvent, PredictionEvent

START = datetime(2026, 11, 28, tzinfo=UTC)


@dataclass(frozen=True)
class Scored:
    prediction: PredictionEvent
    label: LabelEvent

    def joined(self, prediction_id: str | None = None) -> LabeledExample:
        """The labeled example the detector makes of this pair (under another ``prediction_id`` if given)."""
        return LabeledExample(
            prediction_id=prediction_id or self.prediction.prediction_id,
            model_id=self.prediction.model_id,
            model_version=self.prediction.model_version,
            features=self.prediction.features,
            prediction=self.prediction.prediction,
            label=self.label.label,
            prediction_timestamp=self.prediction.timestamp,
            label_timestamp=self.label.timestamp,
        )


def sea_model(seed: int = 1) -> DecisionTreeClassifier:
    rows = list(synth.SEA(variant=0, seed=seed).take(5_000))
    return DecisionTreeClassifier(max_depth=6, random_state=0).fit(
        [[x[0], x[1], x[2]] for x, _ in rows], [int(y) for _, y in rows]
    )


def sea_stream(
    model: DecisionTreeClassifier, *, n: int, drift_at: int | None, model_id: str, seed: int = 42
) -> list[Scored]:
    """``n`` scored SEA examples; from ``drift_at`` on, the concept switches from variant 0 to variant 3."""
    before = n if drift_at is None else drift_at
    rows = list(synth.SEA(variant=0, seed=seed).take(before))
    if drift_at is not None:
        rows += list(synth.SEA(variant=3, seed=seed + 1).take(n - drift_at))
    predictions = model.predict([[x[0], x[1], x[2]] for x, _ in rows])
    out = []
    for i, ((x, y), predicted) in enumerate(zip(rows, predictions, strict=True)):
        at = START + timedelta(seconds=i)
        out.append(
            Scored(
                PredictionEvent(
                    prediction_id=f"{model_id}-{i}",
                    model_id=model_id,
                    model_version=1,
                    features={"x0": x[0], "x1": x[1], "x2": x[2]},
                    prediction=int(predicted),
                    timestamp=at,
                ),
                LabelEvent(
                    prediction_id=f"{model_id}-{i}",
                    model_id=model_id,
                    label=int(y),
                    timestamp=at + timedelta(seconds=30),
                ),
            )
        )
    return out


def delayed_shuffled_labels(stream: list[Scored], window: int, seed: int = 7) -> list[LabelEvent]:
    """Labels in an order shuffled within consecutive blocks of ``window`` (late and out of order)."""
    rng = random.Random(seed)
    labels = [item.label for item in stream]
    out: list[LabelEvent] = []
    for start in range(0, len(labels), window):
        block = labels[start : start + window]
        rng.shuffle(block)
        out.extend(block)
    return out
