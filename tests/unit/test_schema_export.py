"""The exported JSON Schema files: current with the models, and agreeing with the codec on real payloads.

This is the interop guarantee: a producer in another language that validates against schemas/json/ sends
what the Python consumers accept, and is told "no" for what they refuse.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from schema_examples import VALID_EXAMPLES, wire_payload

from retrain.schemas.codec import EventDecodeError, decode, encode
from retrain.schemas.events import (
    EVENT_TYPES,
    DeadLetter,
    Event,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    ScoringRequest,
)
from retrain.schemas.export import SCHEMA_DIR, schema_file_name, stale_schema_files


def test_exported_schema_files_are_current() -> None:
    stale = stale_schema_files()
    assert stale == [], (
        f"JSON Schema files in {SCHEMA_DIR} are missing or out of date with the pydantic models: {stale}. "
        "Run `retrain schemas export` and commit the result."
    )


@cache
def validator(event_type: type[Event]) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / schema_file_name(event_type)).read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_schema_file_is_a_valid_draft_2020_12_schema(event_type: type[Event]) -> None:
    schema = validator(event_type).schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:kafka-retrain:schema:{event_type.__name__}:v1"
    assert "schema_version" in schema["required"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("event", [pytest.param(e, id=name) for name, e in VALID_EXAMPLES])
def test_encoded_valid_event_matches_its_json_schema(event: Event) -> None:
    validator(type(event)).validate(json.loads(encode(event)))


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_hand_written_wire_payload_matches_its_json_schema(event_type: type[Event]) -> None:
    validator(event_type).validate(json.loads(wire_payload(event_type)))


def case(case_id: str, event_type: type[Event], changes: dict[str, Any] | None = None, drop: str | None = None):
    return pytest.param(event_type, changes, drop, id=case_id)


S, P, L, X, R, U, D = (
    ScoringRequest,
    PredictionEvent,
    LabelEvent,
    LabeledExample,
    RetrainEvent,
    ModelUpdatedEvent,
    DeadLetter,
)

REFUSED_BY_BOTH = [
    *[case(f"{t.__name__}-missing-schema_version", t, drop="schema_version") for t in EVENT_TYPES],
    *[case(f"{t.__name__}-extra-key", t, {"surprise": 1}) for t in EVENT_TYPES],
    case("missing-prediction_id", P, drop="prediction_id"),
    case("request-missing-prediction_id", S, drop="prediction_id"),
    case("request-missing-features", S, drop="features"),
    case("request-has-a-prediction", S, {"prediction": 1}),
    case("request-feature-list", S, {"features.a": ["UA"]}),
    case("request-timestamp-number", S, {"timestamp": 1710072000}),
    case("missing-label", L, drop="label"),
    case("missing-label_timestamp", X, drop="label_timestamp"),
    case("missing-reason", R, drop="reason"),
    case("missing-outcome", U, drop="outcome"),
    case("missing-payload_b64", D, drop="payload_b64"),
    case("nested-extra-key", R, {"evidence.surprise": 1}),
    case("schema_version-2", P, {"schema_version": 2}),
    case("schema_version-string", P, {"schema_version": "1"}),
    case("schema_version-bool", P, {"schema_version": True}),
    case("model_version-string", P, {"model_version": "3"}),
    case("model_version-negative", P, {"model_version": -1}),
    case("feature-category-257-chars", P, {"features.a": "c" * 257}),
    case("feature-object", P, {"features.a": {"b": True}}),
    case("features-empty", P, {"features": {}}),
    case("feature-name-too-long", P, {"features": {"n" * 129: 1.0}}),
    case("feature-name-control-char", P, {"features": {"a\nb": 1.0}}),
    case("feature-name-control-char-string-value", P, {"features": {"a\nb": "not a number"}}),
    case("label-list", L, {"label": [1]}),
    case("label-too-long", L, {"label": "c" * 257}),
    case("timestamp-number", L, {"timestamp": 1710072000}),
    case("model_id-path-traversal", P, {"model_id": "../x"}),
    case("model_id-space", L, {"model_id": "fraud v2"}),
    case("model_id-too-long", R, {"model_id": "m" * 65}),
    case("prediction_id-space", P, {"prediction_id": "pred 1"}),
    case("reason-unknown", R, {"reason": "boredom"}),
    case("window-last_n-zero", R, {"suggested_window.last_n": 0}),
    case("sha256-uppercase", U, {"sha256": "A" * 64}),
    case("partition-string", D, {"source_partition": "0"}),
]


@pytest.mark.parametrize(("event_type", "changes", "drop"), REFUSED_BY_BOTH)
def test_invalid_payload_is_refused_by_json_schema_and_codec(
    event_type: type[Event], changes: dict[str, Any] | None, drop: str | None
) -> None:
    payload = wire_payload(event_type, changes, drop)
    errors = list(validator(event_type).iter_errors(json.loads(payload)))
    assert errors, f"the JSON Schema accepts {payload[:200]!r}"
    with pytest.raises(EventDecodeError):
        decode(payload, event_type)
