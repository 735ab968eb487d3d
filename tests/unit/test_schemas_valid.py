"""Valid events: exact round trips, UTC normalization, int -> float features, limits, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from schema_examples import T0, VALID_EXAMPLES, WIRE, label, prediction, wire_payload

from retrain.schemas.codec import EventDecodeError, decode, encode
from retrain.schemas.events import (
    EVENT_TYPES,
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    DeadLetter,
    Event,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    ScoringRequest,
)
from retrain.schemas.types import MAX_FEATURES

MiB = 1024 * 1024


def typed(value: Any) -> Any:
    """``value`` with the type of every leaf attached, so that ``True``, ``1`` and ``1.0`` compare unequal."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("event", [pytest.param(e, id=name) for name, e in VALID_EXAMPLES])
def test_valid_event_round_trips_exactly(event: Event) -> None:
    payload = encode(event)
    assert isinstance(payload, bytes)
    assert json.loads(payload)["schema_version"] == 1  # required on the wire, so always written
    decoded = decode(payload, type(event))
    assert type(decoded) is type(event)
    assert decoded == event
    assert typed(decoded.model_dump()) == typed(event.model_dump())
    assert encode(decoded) == payload


def test_every_event_type_has_a_valid_example() -> None:
    assert {type(event) for _, event in VALID_EXAMPLES} == set(EVENT_TYPES)
    assert set(WIRE) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_hand_written_wire_payload_decodes(event_type: type[Event]) -> None:
    event = decode(wire_payload(event_type), event_type)
    assert decode(encode(event), event_type) == event


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("true", True, id="bool"),
        pytest.param("3", 3, id="int"),
        pytest.param('"3"', "3", id="numeric-looking-str"),
        pytest.param('"spam"', "spam", id="str"),
        pytest.param("3.5", 3.5, id="float"),
        pytest.param("-0.0", -0.0, id="negative-zero"),
        pytest.param("1e300", 1e300, id="large-finite-float"),
        pytest.param(str(2**63 - 1), 2**63 - 1, id="int64-max"),
        pytest.param(str(-(2**63)), -(2**63), id="int64-min"),
    ],
)
def test_target_keeps_its_json_type(token: str, expected: Any) -> None:
    payload = json.dumps({**WIRE[LabelEvent], "label": "__t__"}).replace('"__t__"', token).encode()
    event = decode(payload, LabelEvent)
    assert typed(event.label) == typed(expected)
    assert typed(decode(encode(event), LabelEvent).label) == typed(expected)


@pytest.mark.parametrize(
    ("event_type", "path"),
    [
        (PredictionEvent, "timestamp"),
        (LabelEvent, "timestamp"),
        (LabeledExample, "prediction_timestamp"),
        (LabeledExample, "label_timestamp"),
        (RetrainEvent, "detected_at"),
        (RetrainEvent, "suggested_window.start"),
        (RetrainEvent, "evidence.position.timestamp"),
        (ModelUpdatedEvent, "updated_at"),
        (DeadLetter, "failed_at"),
        (DeadLetter, "source_timestamp"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else v,
)
@pytest.mark.parametrize("text", ["2024-03-10T17:30:00.5+05:30", "2024-03-10T05:00:00.5-07:00"])
def test_timestamp_with_offset_is_normalized_to_utc(event_type: type[Event], path: str, text: str) -> None:
    changes: dict[str, Any] = {path: text}
    if path == "evidence.position.timestamp":
        changes.update({"evidence.position.topic": "t", "evidence.position.partition": 0})
        changes["evidence.position.offset"] = 0
    event = decode(wire_payload(event_type, changes), event_type)
    value: Any = event
    for part in path.split("."):
        value = getattr(value, part)
    assert value.tzinfo is UTC
    assert value == datetime(2024, 3, 10, 12, 0, 0, 500000, tzinfo=UTC)
    assert (value.hour, value.minute) == (12, 0)
    assert decode(encode(event), event_type) == event


def test_timestamp_given_in_python_with_offset_is_normalized_to_utc() -> None:
    local = datetime(2024, 3, 10, 5, 0, tzinfo=timezone(timedelta(hours=-7)))
    event = label(timestamp=local)
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp == local
    assert event.timestamp.hour == 12


def test_int_feature_values_are_accepted_and_stored_as_float() -> None:
    event = decode(wire_payload(PredictionEvent, {"features": {"a": 2, "b": -3, "c": 0}}), PredictionEvent)
    assert typed(event.features) == typed({"a": 2.0, "b": -3.0, "c": 0.0})
    assert typed(prediction(features={"a": 7}).features) == typed({"a": 7.0})


def test_feature_values_are_numbers_booleans_categories_or_missing() -> None:
    features = {"n": 2, "flag": True, "off": False, "carrier": "UA", "empty": "", "gap": None, "numeric_text": "1.5"}
    for event_type in (ScoringRequest, PredictionEvent, LabeledExample):
        event = decode(wire_payload(event_type, {"features": features}), event_type)
        assert typed(event.features) == typed({**features, "n": 2.0})
        assert decode(encode(event), event_type) == event


def test_int_metric_values_are_accepted_and_stored_as_float() -> None:
    event = decode(wire_payload(ModelUpdatedEvent, {"metrics": {"n_errors": 3}}), ModelUpdatedEvent)
    assert typed(event.metrics) == typed({"n_errors": 3.0})


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"model_id": "M" * 64}, id="model_id-64-chars"),
        pytest.param({"model_id": "9a.b_c-D"}, id="model_id-all-allowed-characters"),
        pytest.param({"prediction_id": "!" + "x" * 126 + "~"}, id="prediction_id-128-printable-ascii"),
        pytest.param({"features": {f"f{i}": float(i) for i in range(MAX_FEATURES)}}, id="max-features"),
        pytest.param({"features": {"n" * 128: 1.0}}, id="feature-name-128-chars"),
        pytest.param({"prediction": "c" * 256}, id="class-label-256-chars"),
        pytest.param({"features": {"carrier": "é" * 256}}, id="category-256-chars"),
        pytest.param({"model_version": 0}, id="model_version-0"),
        pytest.param({"model_version": 2**31 - 1}, id="model_version-max"),
    ],
)
def test_values_at_the_limits_are_accepted(changes: dict[str, Any]) -> None:
    event = decode(wire_payload(PredictionEvent, changes), PredictionEvent)
    assert decode(encode(event), PredictionEvent) == event


def test_note_of_2048_characters_is_accepted() -> None:
    event = decode(wire_payload(RetrainEvent, {"note": "n" * 2048}), RetrainEvent)
    assert event.note == "n" * 2048


def test_payload_of_exactly_1_mib_is_accepted() -> None:
    payload = wire_payload(LabelEvent)
    payload += b" " * (MiB - len(payload))
    assert len(payload) == MiB
    assert decode(payload, LabelEvent).label == "fraud"


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_decode_accepts_bytes_like_payloads(wrap: Any) -> None:
    assert decode(wrap(wire_payload(LabelEvent)), LabelEvent) == decode(wire_payload(LabelEvent), LabelEvent)


def test_retrain_reasons_are_exactly_the_documented_ones() -> None:
    expected = {"drift", "performance", "data_volume", "schedule", "business", "feedback", "manual"}
    assert {reason.value for reason in RetrainReason} == expected
    assert len(RetrainReason) == len(expected)


class _Outer:
    class _Inner(RuntimeError):
        pass


def dead_letter(value: bytes | None, error: BaseException | None = None) -> DeadLetter:
    return DeadLetter.for_record(
        topic="predictions",
        partition=3,
        offset=17,
        key=b"\x00key\xff",
        value=value,
        error=error or ValueError("boom"),
        reason="invalid_utf8",
        service="joiner",
        timestamp=T0,
    )


def test_dead_letter_keeps_binary_garbage_byte_for_byte() -> None:
    garbage = bytes(range(256)) + b"\xff\xfe\x00{"
    letter = dead_letter(garbage)
    assert letter.payload() == garbage
    assert letter.payload_size == len(garbage)
    assert base64.b64decode(letter.key_b64 or "") == b"\x00key\xff"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("predictions", 3, 17)
    assert (letter.error_reason, letter.error_message, letter.service) == ("invalid_utf8", "boom", "joiner")
    assert letter.source_timestamp == T0
    decoded = decode(encode(letter), DeadLetter)
    assert decoded == letter
    assert decoded.payload() == garbage


def test_dead_letter_of_a_tombstone_has_an_empty_payload() -> None:
    letter = dead_letter(None)
    assert (letter.payload(), letter.payload_size) == (b"", 0)
    assert decode(encode(letter), DeadLetter) == letter


def oversized() -> bytes:
    return (bytes(range(251)) * (2 * MiB // 251 + 1))[: 2 * MiB]


def test_dead_letter_truncates_an_oversized_payload_but_keeps_its_size() -> None:
    value = oversized()
    letter = dead_letter(value)
    assert letter.payload() == value[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
    assert len(letter.payload()) == MAX_DEAD_LETTER_PAYLOAD_BYTES
    assert letter.payload_size == 2 * MiB


def test_dead_letter_of_an_oversized_payload_round_trips_through_the_codec() -> None:
    letter = dead_letter(oversized())
    decoded = decode(encode(letter), DeadLetter)
    assert decoded == letter
    assert decoded.payload() == oversized()[:MAX_DEAD_LETTER_PAYLOAD_BYTES]


def test_dead_letter_truncates_a_long_error_message() -> None:
    letter = dead_letter(b"x", ValueError("e" * 10_000))
    assert letter.error_message == "e" * 2048
    assert decode(encode(letter), DeadLetter) == letter


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(ValueError("x"), "builtins.ValueError", id="builtin"),
        pytest.param(json.JSONDecodeError("x", "{", 0), "json.decoder.JSONDecodeError", id="stdlib"),
        pytest.param(
            EventDecodeError("LabelEvent", "empty", "x"), "retrain.schemas.codec.EventDecodeError", id="codec"
        ),
        pytest.param(_Outer._Inner("x"), f"{__name__}._Outer._Inner", id="nested-class"),
    ],
)
def test_dead_letter_error_class_is_fully_qualified(error: BaseException, expected: str) -> None:
    assert dead_letter(b"x", error).error_class == expected
