"""Invalid payloads: every way in is refused with EventDecodeError, a stable reason and the field's path."""

from __future__ import annotations

from typing import Any

import pytest
from schema_examples import SHA256, WIRE, Raw, wire_payload

from retrain.schemas.codec import EventDecodeError, decode
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
from retrain.schemas.types import MAX_FEATURES

MiB = 1024 * 1024
NAN, INF = float("nan"), float("inf")


def refused(payload: Any, event_type: type[Event]) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(payload, event_type)
    assert caught.value.event_type == event_type.__name__
    assert event_type.__name__ in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(None, "empty", id="none"),
        pytest.param(b"", "empty", id="empty-bytes"),
        pytest.param(bytearray(), "empty", id="empty-bytearray"),
        pytest.param(b"{" + b" " * MiB + b"}", "too_large", id="over-1-MiB"),
        pytest.param(b'{"label": "\xff\xfe"}', "invalid_utf8", id="invalid-utf8-in-string"),
        pytest.param(b"\xc3\x28", "invalid_utf8", id="invalid-utf8-bare"),
        pytest.param(b"{not json}", "invalid_json", id="garbage"),
        pytest.param(b'{"schema_version": 1', "invalid_json", id="truncated"),
        pytest.param(b"   ", "invalid_json", id="whitespace-only"),
        pytest.param(b'{"schema_version": 1,}', "invalid_json", id="trailing-comma"),
        pytest.param(b"[1, 2]", "not_an_object", id="array"),
        pytest.param(b"42", "not_an_object", id="number"),
        pytest.param(b'"an event"', "not_an_object", id="string"),
        pytest.param(b"null", "not_an_object", id="null"),
        pytest.param(b"true", "not_an_object", id="bool"),
    ],
)
def test_unreadable_payload_is_refused(payload: Any, reason: str) -> None:
    assert refused(payload, LabelEvent).reason == reason


@pytest.mark.parametrize("version", [2, 0, -1, "1", "2", 2**63, 2**64, Raw("1" + "0" * 400)], ids=repr)
@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_other_schema_version_is_unsupported(event_type: type[Event], version: Any) -> None:
    error = refused(wire_payload(event_type, {"schema_version": version}), event_type)
    assert error.reason == "unsupported_schema_version"
    assert "schema_version" in str(error)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_boolean_schema_version_is_refused(event_type: type[Event]) -> None:
    # JSON `true` is not the integer 1 (True == 1 in Python): a type error, not an unknown version.
    error = refused(wire_payload(event_type, {"schema_version": True}), event_type)
    assert error.reason == "validation"
    assert "schema_version" in str(error)


def test_string_schema_version_message_shows_the_string() -> None:
    error = refused(wire_payload(LabelEvent, {"schema_version": "1"}), LabelEvent)
    assert "'1'" in str(error) or '"1"' in str(error), str(error)


REQUIRED: dict[type[Event], list[str]] = {
    ScoringRequest: ["prediction_id", "model_id", "features", "timestamp"],
    PredictionEvent: ["prediction_id", "model_id", "model_version", "features", "prediction", "timestamp"],
    LabelEvent: ["prediction_id", "model_id", "label", "timestamp"],
    LabeledExample: [
        "prediction_id",
        "model_id",
        "model_version",
        "features",
        "prediction",
        "label",
        "prediction_timestamp",
        "label_timestamp",
    ],
    # Identity and time of deduplicated events must come on the wire: a redelivery keeps its id.
    RetrainEvent: ["event_id", "detected_at", "model_id", "reason"],
    ModelUpdatedEvent: ["event_id", "updated_at", "model_id", "promoted", "outcome"],
    DeadLetter: [
        "event_id",
        "failed_at",
        "source_topic",
        "source_partition",
        "source_offset",
        "payload_b64",
        "payload_size",
        "error_reason",
        "error_class",
        "error_message",
        "service",
    ],
}
MISSING = [
    pytest.param(event_type, key, id=f"{event_type.__name__}-{key}")
    for event_type in EVENT_TYPES
    for key in ["schema_version", *REQUIRED[event_type]]
]


@pytest.mark.parametrize(("event_type", "key"), MISSING)
def test_missing_required_key_is_refused(event_type: type[Event], key: str) -> None:
    error = refused(wire_payload(event_type, drop=key), event_type)
    assert error.reason == "validation"
    assert key in str(error)


EXTRA = [pytest.param(t, "surprise", id=f"{t.__name__}-top-level") for t in EVENT_TYPES] + [
    pytest.param(RetrainEvent, "evidence.surprise", id="RetrainEvent-evidence"),
    pytest.param(RetrainEvent, "suggested_window.surprise", id="RetrainEvent-suggested_window"),
]


@pytest.mark.parametrize(("event_type", "path"), EXTRA)
def test_unknown_key_is_refused(event_type: type[Event], path: str) -> None:
    error = refused(wire_payload(event_type, {path: 1}), event_type)
    assert error.reason == "validation"
    assert path in str(error)


def case(case_id: str, event_type: type[Event], changes: dict[str, Any], field: str) -> Any:
    return pytest.param(event_type, changes, field, id=case_id)


P, L, X, R, U, D, S = (
    PredictionEvent,
    LabelEvent,
    LabeledExample,
    RetrainEvent,
    ModelUpdatedEvent,
    DeadLetter,
    ScoringRequest,
)
TOO_MANY = {f"f{i}": 1.0 for i in range(MAX_FEATURES + 1)}

INVALID_FIELDS = [
    # Numbers must be finite JSON numbers: no NaN / Infinity, no overflow to infinity. A feature is a number,
    # a boolean, a category of at most 256 characters or null: never a list or an object.
    case("feature-nan", P, {"features.a": NAN}, "features.a"),
    case("feature-inf", P, {"features.a": INF}, "features.a"),
    case("feature-neg-inf", P, {"features.a": -INF}, "features.a"),
    case("feature-1e400", P, {"features.a": Raw("1e400")}, "features.a"),
    case("feature-category-257-chars", P, {"features.a": "c" * 257}, "features.a"),
    case("feature-list", P, {"features.a": [1.0]}, "features.a"),
    case("feature-object", P, {"features.a": {"b": 1.0}}, "features.a"),
    case("feature-list-scoring-request", S, {"features.a": ["UA"]}, "features.a"),
    case("prediction-nan", P, {"prediction": NAN}, "prediction"),
    case("prediction-inf", P, {"prediction": INF}, "prediction"),
    case("prediction-1e400", P, {"prediction": Raw("1e400")}, "prediction"),
    case("label-neg-inf", L, {"label": -INF}, "label"),
    case("label-nan", X, {"label": NAN}, "label"),
    case("label-1e400", L, {"label": Raw("-1e400")}, "label"),
    case("label-null", L, {"label": None}, "label"),
    case("label-empty-string", L, {"label": ""}, "label"),
    case("label-too-long", L, {"label": "c" * 257}, "label"),
    # Integer targets are 64-bit (the trainer's label arrays are int64; float() of 400 digits overflows).
    case("label-400-digits", L, {"label": Raw("1" + "0" * 400)}, "label"),
    case("label-2**64", X, {"label": 2**64}, "label"),
    case("label-below-int64", L, {"label": -(2**63) - 1}, "label"),
    case("prediction-2**63", P, {"prediction": 2**63}, "prediction"),
    case("metric-nan", U, {"metrics.accuracy": NAN}, "metrics.accuracy"),
    case("metric-inf", U, {"metrics.accuracy": INF}, "metrics.accuracy"),
    case("metric-1e400", U, {"metrics.accuracy": Raw("1e400")}, "metrics.accuracy"),
    case("metric-string-number", U, {"metrics.accuracy": "0.9"}, "metrics.accuracy"),
    case("evidence-value-nan", R, {"evidence.values.delta": NAN}, "evidence.values.delta"),
    case("evidence-before-inf", R, {"evidence.before": INF}, "evidence.before"),
    case("model_version-string", P, {"model_version": "3"}, "model_version"),
    case("model_version-float", P, {"model_version": 3.5}, "model_version"),
    case("model_version-negative", P, {"model_version": -1}, "model_version"),
    case("model_version-over-int32", P, {"model_version": 2**31}, "model_version"),
    case("retrain-model_version-negative", R, {"model_version": -1}, "model_version"),
    case("update-version-negative", U, {"version": -1}, "version"),
    case("partition-string", D, {"source_partition": "0"}, "source_partition"),
    case("offset-negative", D, {"source_offset": -1}, "source_offset"),
    case("payload_size-bool", D, {"payload_size": True}, "payload_size"),
    case("promoted-string", U, {"promoted": "true"}, "promoted"),
    # Timestamps are RFC 3339 strings with an offset.
    case("naive-timestamp", P, {"timestamp": "2024-03-10T12:00:00"}, "timestamp"),
    case("naive-label_timestamp", X, {"label_timestamp": "2024-03-10T12:00:00"}, "label_timestamp"),
    case("naive-detected_at", R, {"detected_at": "2024-03-10T12:00:00"}, "detected_at"),
    case("naive-window-start", R, {"suggested_window.start": "2024-03-01T00:00:00"}, "suggested_window.start"),
    case("naive-updated_at", U, {"updated_at": "2024-03-10T12:00:00"}, "updated_at"),
    case("naive-failed_at", D, {"failed_at": "2024-03-10T12:00:00"}, "failed_at"),
    case("epoch-int-timestamp", L, {"timestamp": 1710072000}, "timestamp"),
    case("epoch-float-timestamp", L, {"timestamp": 1710072000.5}, "timestamp"),
    case("epoch-string-timestamp", L, {"timestamp": "1710072000"}, "timestamp"),
    case("epoch-millis-string-timestamp", L, {"timestamp": "1710072000000"}, "timestamp"),
    case("date-only-timestamp", L, {"timestamp": "2024-03-10"}, "timestamp"),
    case("free-text-timestamp", L, {"timestamp": "yesterday"}, "timestamp"),
    case("null-timestamp", L, {"timestamp": None}, "timestamp"),
    # Identifiers.
    case("model_id-empty", P, {"model_id": ""}, "model_id"),
    case("model_id-65-chars", P, {"model_id": "m" * 65}, "model_id"),
    case("model_id-path-traversal", P, {"model_id": "../x"}, "model_id"),
    case("model_id-slash", L, {"model_id": "a/b"}, "model_id"),
    case("model_id-space", X, {"model_id": "fraud v2"}, "model_id"),
    case("model_id-leading-dot", R, {"model_id": ".hidden"}, "model_id"),
    case("model_id-leading-dash", U, {"model_id": "-x"}, "model_id"),
    case("model_id-non-ascii", P, {"model_id": "modèle"}, "model_id"),
    case("model_id-number", P, {"model_id": 7}, "model_id"),
    case("prediction_id-space", P, {"prediction_id": "pred 1"}, "prediction_id"),
    case("prediction_id-tab", L, {"prediction_id": "pred\t1"}, "prediction_id"),
    case("prediction_id-newline", X, {"prediction_id": "pred1\n"}, "prediction_id"),
    case("prediction_id-129-chars", P, {"prediction_id": "p" * 129}, "prediction_id"),
    case("prediction_id-empty", L, {"prediction_id": ""}, "prediction_id"),
    case("event_id-space", R, {"event_id": "a b"}, "event_id"),
    # Sizes.
    case("features-empty", P, {"features": {}}, "features"),
    case("features-too-many", P, {"features": TOO_MANY}, "features"),
    case("feature-name-129-chars", P, {"features": {"n" * 129: 1.0}}, "features."),
    case("feature-name-empty", X, {"features": {"": 1.0}}, "features."),
    case("feature-name-control-char", P, {"features": {"a\nb": 1.0}}, "features."),
    case("note-2049-chars", R, {"note": "n" * 2049}, "note"),
    case("detail-2049-chars", U, {"detail": "n" * 2049}, "detail"),
    # Enums and cross-field rules.
    case("reason-unknown", R, {"reason": "boredom"}, "reason"),
    case("reason-wrong-case", R, {"reason": "DRIFT"}, "reason"),
    case("outcome-unknown", U, {"outcome": "maybe"}, "outcome"),
    case("promoted-but-rejected", U, {"outcome": "rejected"}, "promoted"),
    case("not-promoted-but-outcome-promoted", U, {"promoted": False}, "promoted"),
    case("promoted-without-sha256", U, {"sha256": None}, "sha256"),
    case("promoted-without-version", U, {"version": None}, "version"),
    case("promoted-without-artifact", U, {"artifact_uri": None}, "artifact_uri"),
    case("sha256-uppercase", U, {"sha256": SHA256.upper()}, "sha256"),
    case("sha256-63-chars", U, {"sha256": SHA256[:63]}, "sha256"),
    case("sha256-non-hex", U, {"sha256": "g" * 64}, "sha256"),
    case("window-start-after-end", R, {"suggested_window.end": "2024-02-01T00:00:00Z"}, "suggested_window"),
    case(
        "window-neither-last_n-nor-start",
        R,
        {"suggested_window": {"end": WIRE[R]["detected_at"]}},
        "suggested_window",
    ),
    case("window-last_n-zero", R, {"suggested_window.last_n": 0}, "suggested_window.last_n"),
]


@pytest.mark.parametrize(("event_type", "changes", "field"), INVALID_FIELDS)
def test_invalid_field_is_refused_naming_the_field(
    event_type: type[Event], changes: dict[str, Any], field: str
) -> None:
    error = refused(wire_payload(event_type, changes), event_type)
    assert error.reason == "validation"
    assert field in str(error), str(error)
