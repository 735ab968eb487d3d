"""Models, registry versions, requests and collected outputs for the scorer service's unit tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sklearn.tree import DecisionTreeClassifier

from retrain.consumers.scorer import ScorerService
from retrain.decisions.training import FittedModel
from retrain.kafka import Record
from retrain.registry import ModelRegistry, ModelVersionInfo
from retrain.schemas import (
    ModelUpdatedEvent,
    PredictionEvent,
    ScoringRequest,
    UpdateOutcome,
    encode,
)
from retrain.settings import TopicSettings

KEY = "scorer-test-key-0123456789abcdef-xyz"


TOPICS = TopicSettings()


START = datetime(2026, 11, 28, tzinfo=UTC)


WINDOW = {"n_samples": 100, "first_label_timestamp": None, "last_label_timestamp": None}


class CollectingOutputs:
    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []
        self.dead: list[tuple[int, str, str]] = []  # (offset, reason, message)

    def emit(self, event) -> None:
        self.events.append(event)

    def dead_letter_record(self, record: Record, error: Exception, reason: str) -> None:
        self.dead.append((record.offset, reason, str(error)))


def threshold_model(above: int) -> FittedModel:
    """Predicts ``above`` when x > 0.5, else ``1 - above``: version 1 and version 2 disagree everywhere."""
    rng = random.Random(0)
    xs = [rng.random() for _ in range(200)]
    tree = DecisionTreeClassifier(max_depth=1, random_state=0).fit(
        [[x] for x in xs], [above if x > 0.5 else 1 - above for x in xs]
    )
    return FittedModel(tree, ["x"], "classification")


def register(registry: ModelRegistry, model_id: str, model, *, promote: bool) -> ModelVersionInfo:
    info = registry.register(model_id, model, n_samples=200, metrics={}, training_window=WINDOW, trigger_event_id=None)
    return registry.promote(model_id, info.version) if promote else info


def update(info: ModelVersionInfo, *, sha256: str | None = None, outcome=UpdateOutcome.PROMOTED) -> ModelUpdatedEvent:
    return ModelUpdatedEvent(
        model_id=info.model_id,
        version=info.version,
        promoted=True,
        outcome=outcome,
        artifact_uri=info.artifact_uri,
        sha256=sha256 or info.sha256,
    )


def requests(model_id: str, xs: list[float], start: int = 0) -> list[ScoringRequest]:
    return [
        ScoringRequest(
            prediction_id=f"{model_id}-{start + i}",
            model_id=model_id,
            features={"x": x},
            timestamp=START + timedelta(seconds=start + i),
        )
        for i, x in enumerate(xs)
    ]


def record(request: ScoringRequest | bytes, offset: int, model_id: str = "m") -> Record:
    value = request if isinstance(request, bytes) else encode(request)
    key = model_id.encode()
    return Record(TOPICS.scoring_requests, 0, offset, key, value, 0)


def score(service: ScorerService, batch: list[ScoringRequest], first_offset: int = 0) -> CollectingOutputs:
    out = CollectingOutputs()
    for offset, request in enumerate(batch, start=first_offset):
        service.handle(record(request, offset, request.model_id), out)  # type: ignore[arg-type]
    service.after_batch(out)  # type: ignore[arg-type]
    return out
