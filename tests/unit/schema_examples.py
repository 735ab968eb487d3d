"""Valid example events and wire payloads shared by the schema tests (not a test module itself)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from retrain.schemas.events import (
    DeadLetter,
    Event,
    Evidence,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    ScoringRequest,
    StreamPosition,
    TrainingWindow,
    UpdateOutcome,
)

T0 = datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(days=2, seconds=7)
SHA256 = "0123456789abcdef" * 4


def scoring_request(**overrides: Any) -> ScoringRequest:
    fields: dict[str, Any] = {
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "features": {"amount": 12.5, "age_days": 400.0},
        "timestamp": T0,
    }
    return ScoringRequest(**{**fields, **overrides})


def prediction(**overrides: Any) -> PredictionEvent:
    fields: dict[str, Any] = {
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "model_version": 3,
        "features": {"amount": 12.5, "age_days": 400.0},
        "prediction": True,
        "timestamp": T0,
    }
    return PredictionEvent(**{**fields, **overrides})


def label(**overrides: Any) -> LabelEvent:
    fields: dict[str, Any] = {
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "label": False,
        "timestamp": T1,
    }
    return LabelEvent(**{**fields, **overrides})


def labeled(**overrides: Any) -> LabeledExample:
    fields: dict[str, Any] = {
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "model_version": 3,
        "features": {"amount": 12.5},
        "prediction": True,
        "label": False,
        "prediction_timestamp": T0,
        "label_timestamp": T1,
    }
    return LabeledExample(**{**fields, **overrides})


def promoted_update(**overrides: Any) -> ModelUpdatedEvent:
    fields: dict[str, Any] = {
        "event_id": "upd-1",
        "model_id": "fraud-v2",
        "version": 4,
        "previous_version": 3,
        "promoted": True,
        "outcome": UpdateOutcome.PROMOTED,
        "metrics": {"accuracy": 0.91, "f1": 0.5},
        "n_samples": 5000,
        "artifact_uri": "file:///registry/fraud-v2/4/model.pkl",
        "sha256": SHA256,
        "trigger_event_id": "ret-1",
        "updated_at": T1,
    }
    return ModelUpdatedEvent(**{**fields, **overrides})


FULL_RETRAIN = RetrainEvent(
    event_id="ret-1",
    model_id="fraud-v2",
    reason=RetrainReason.DRIFT,
    detector="adwin",
    detected_at=T1,
    model_version=3,
    evidence=Evidence(
        metric="error_rate",
        before=0.05,
        after=0.21,
        window_width=2000,
        examples_seen=12000,
        detectors=["adwin", "page_hinkley"],
        position=StreamPosition(topic="labeled-examples", partition=2, offset=99, timestamp=T1),
        values={"delta": 0.002},
    ),
    suggested_window=TrainingWindow(last_n=5000, start=T0, end=T1),
    note="error rate jumped after the release",
)

# (id, event): every event type, with the Target variants (bool, int, str, float) and the optional parts.
VALID_EXAMPLES: list[tuple[str, Event]] = [
    ("scoring-request", scoring_request()),
    ("scoring-request-int-and-unicode-features", scoring_request(features={"n": 3, "prix_€": -1e-9})),
    ("prediction-bool", prediction(prediction=True)),
    ("prediction-int-class", prediction(prediction=3)),
    ("prediction-str-class", prediction(prediction="chargeback")),
    ("prediction-numeric-looking-str-class", prediction(prediction="1.5")),
    ("prediction-regression-float", prediction(prediction=-17.25)),
    ("prediction-integral-float", prediction(prediction=2.0)),
    ("prediction-version-0-unicode-feature", prediction(model_version=0, features={"prix_€": 1e-9})),
    (
        "prediction-categorical-bool-missing-features",
        prediction(features={"carrier": "UA", "weekend": True, "distance": None, "hour": 7.0}),
    ),
    ("label-bool", label(label=False)),
    ("label-int", label(label=0)),
    ("label-str", label(label="légitime")),
    ("label-float", label(label=3.5)),
    ("labeled-classification", labeled()),
    ("labeled-str-vs-int", labeled(prediction="cat", label=7)),
    ("labeled-regression", labeled(prediction=10.5, label=11.0)),
    ("retrain-minimal", RetrainEvent(event_id="ret-0", model_id="m", reason="manual", detected_at=T0)),
    ("retrain-full", FULL_RETRAIN),
    (
        "retrain-window-start-only",
        RetrainEvent(
            event_id="ret-2",
            model_id="m",
            reason="schedule",
            detected_at=T0,
            suggested_window=TrainingWindow(start=T0),
        ),
    ),
    ("update-promoted", promoted_update()),
    (
        "update-rolled-back",
        promoted_update(outcome=UpdateOutcome.ROLLED_BACK, version=2, previous_version=4, metrics={}),
    ),
    (
        "update-rejected",
        ModelUpdatedEvent(
            event_id="upd-2",
            model_id="m",
            version=5,
            promoted=False,
            outcome="rejected",
            metrics={"accuracy": 0.7},
            detail="challenger 0.70 < champion 0.91",
            updated_at=T0,
        ),
    ),
    (
        "update-failed",
        ModelUpdatedEvent(event_id="upd-3", model_id="m", promoted=False, outcome="failed", updated_at=T0),
    ),
    (
        "dead-letter",
        DeadLetter(
            event_id="dl-1",
            source_topic="predictions",
            source_partition=0,
            source_offset=42,
            source_timestamp=T0,
            key_b64="a2V5",
            payload_b64="/wD+",
            payload_size=3,
            error_reason="invalid_utf8",
            error_class="retrain.schemas.codec.EventDecodeError",
            error_message="not UTF-8",
            service="joiner",
            failed_at=T1,
        ),
    ),
]

# The same events as a producer in another language would write them: plain JSON objects.
WIRE: dict[type[Event], dict[str, Any]] = {
    ScoringRequest: {
        "schema_version": 1,
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "features": {"amount": 12.5, "age_days": 400.0},
        "timestamp": "2024-03-10T12:00:00Z",
    },
    PredictionEvent: {
        "schema_version": 1,
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "model_version": 3,
        "features": {"amount": 12.5, "age_days": 400.0},
        "prediction": True,
        "timestamp": "2024-03-10T12:00:00Z",
    },
    LabelEvent: {
        "schema_version": 1,
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "label": "fraud",
        "timestamp": "2024-03-12T12:00:07Z",
    },
    LabeledExample: {
        "schema_version": 1,
        "prediction_id": "pred-0001",
        "model_id": "fraud-v2",
        "model_version": 3,
        "features": {"amount": 12.5},
        "prediction": 0.25,
        "label": 1.0,
        "prediction_timestamp": "2024-03-10T12:00:00Z",
        "label_timestamp": "2024-03-12T12:00:07Z",
    },
    RetrainEvent: {
        "schema_version": 1,
        "event_id": "ret-1",
        "model_id": "fraud-v2",
        "reason": "drift",
        "detected_at": "2024-03-12T12:00:07Z",
        "model_version": 3,
        "evidence": {"metric": "error_rate", "before": 0.05, "after": 0.2, "values": {"delta": 0.002}},
        "suggested_window": {"last_n": 100, "start": "2024-03-01T00:00:00Z", "end": "2024-03-12T00:00:00Z"},
        "note": "drift",
    },
    ModelUpdatedEvent: {
        "schema_version": 1,
        "event_id": "upd-1",
        "model_id": "fraud-v2",
        "version": 4,
        "promoted": True,
        "outcome": "promoted",
        "metrics": {"accuracy": 0.9},
        "artifact_uri": "file:///registry/fraud-v2/4/model.pkl",
        "sha256": SHA256,
        "updated_at": "2024-03-12T12:00:07Z",
    },
    DeadLetter: {
        "schema_version": 1,
        "event_id": "dl-1",
        "source_topic": "predictions",
        "source_partition": 0,
        "source_offset": 42,
        "payload_b64": "/wD+",
        "payload_size": 3,
        "error_reason": "invalid_utf8",
        "error_class": "retrain.schemas.codec.EventDecodeError",
        "error_message": "not UTF-8",
        "service": "joiner",
        "failed_at": "2024-03-12T12:00:07Z",
    },
}


class Raw:
    """A JSON number token written verbatim (e.g. ``1e400``), which ``json.dumps`` cannot produce."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Raw({self.token if len(self.token) <= 12 else self.token[:9] + '...'})"


def wire_payload(event_type: type[Event], changes: dict[str, Any] | None = None, drop: str | None = None) -> bytes:
    """``WIRE[event_type]`` with dotted-path ``changes`` applied and the dotted path ``drop`` removed."""
    data = copy.deepcopy(WIRE[event_type])
    raws: dict[str, str] = {}
    for path, value in (changes or {}).items():
        *parents, leaf = path.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, Raw):
            placeholder = f"__raw_{len(raws)}__"
            raws[placeholder] = value.token
            value = placeholder
        target[leaf] = value
    if drop is not None:
        *parents, leaf = drop.split(".")
        target = data
        for part in parents:
            target = target[part]
        del target[leaf]
    text = json.dumps(data, ensure_ascii=False)  # NaN / Infinity / -Infinity are written as such
    for placeholder, token in raws.items():
        text = text.replace(f'"{placeholder}"', token)
    return text.encode()
