"""The hot path's codec (schemas/fast.py) against the pydantic models: the same events in, the same JSON out.

``decode`` must accept and refuse exactly what ``decode(..., fast_path=False)`` (the pydantic models alone) does,
with the same event or the same error, on the valid and invalid corpora, the fuzz corpus, hand-picked edge cases
and seeded random damage; and the fast path must really be taken for plainly valid events.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from schema_examples import VALID_EXAMPLES, WIRE, Raw, wire_payload
from test_schemas_invalid import EXTRA, INVALID_FIELDS, MISSING

from retrain.schemas import fast
from retrain.schemas.codec import EventDecodeError, decode
from retrain.schemas.events import EVENT_TYPES, Event, LabeledExample, LabelEvent, PredictionEvent, ScoringRequest
from tests.helpers.fuzz_corpus import dumps, generate_bad, template

HOT = (ScoringRequest, PredictionEvent, LabelEvent)
ROLE_TYPES = {"predictions": PredictionEvent, "labels": LabelEvent}


def outcome(payload: Any, event_type: type[Event], fast_path: bool) -> tuple:
    try:
        event = decode(payload, event_type, fast_path=fast_path)
    except EventDecodeError as error:
        return ("refused", error.reason, str(error))
    return ("accepted", type(event), event.model_dump_json(), frozenset(event.model_fields_set), event)


def same_as_pydantic(payload: Any, event_type: type[Event]) -> bool:
    """Assert both paths agree on ``payload``; True when the fast reader itself accepted it."""
    reference = outcome(payload, event_type, fast_path=False)
    assert outcome(payload, event_type, fast_path=True) == reference, payload[:300]
    if not payload or not fast.readable(event_type):
        return False
    read = fast.read(payload, event_type)
    if read is not None:  # what the fast reader accepts, the model accepts as the very same event
        assert reference[0] == "accepted" and read == reference[4] and read.model_dump_json() == reference[2]
    return read is not None


@pytest.mark.parametrize("event", [e for _, e in VALID_EXAMPLES if type(e) in HOT], ids=repr)
def test_valid_examples_take_the_fast_path_and_decode_to_the_same_event(event: Event) -> None:
    for payload in (event.model_dump_json().encode(), fast.write(event)):
        assert same_as_pydantic(payload, type(event))


@pytest.mark.parametrize("event_type", HOT, ids=lambda t: t.__name__)
def test_the_invalid_corpus_is_refused_the_same_way(event_type: type[Event]) -> None:
    payloads = [wire_payload(event_type)]
    payloads += [
        wire_payload(t, changes) for t, changes, _field in (p.values for p in INVALID_FIELDS) if t is event_type
    ]
    payloads += [wire_payload(t, drop=key) for t, key in (p.values for p in MISSING) if t is event_type]
    payloads += [wire_payload(t, {path: 1}) for t, path in (p.values for p in EXTRA) if t is event_type]
    for version in (2, 0, -1, "1", True, 1.0, 2**63, 2**64, None):
        payloads.append(wire_payload(event_type, {"schema_version": version}))
    refused = [p for p in payloads if outcome(p, event_type, fast_path=False)[0] == "refused"]
    assert len(refused) >= len(payloads) - 2  # the untouched WIRE event and schema_version 1.0 (if pydantic takes it)
    for payload in payloads:
        same_as_pydantic(payload, event_type)


def test_the_fuzz_corpus_is_refused_the_same_way_with_the_same_reason() -> None:
    corpus = generate_bad()
    assert len(corpus) == 10_000
    for bad in corpus:
        event_type = ROLE_TYPES[bad.role]
        assert not same_as_pydantic(bad.value, event_type)
        assert outcome(bad.value, event_type, fast_path=True)[:2] == ("refused", bad.reason)
    rng = random.Random(1)
    good = [dumps(template(rng, role, n)) for n, role in enumerate(["predictions", "labels"] * 500)]
    assert all(
        same_as_pydantic(payload, ROLE_TYPES[role])
        for payload, role in zip(good, ["predictions", "labels"] * 500, strict=True)
    )


# Values of every kind the schema draws a line through, for ids, names, numbers, targets and timestamps.
EDGES: list[Any] = [
    "ok",
    "",
    " ",
    "a b",
    "a\n",
    "\n",
    "a\t",
    "é",
    "\x7f",
    "\x85",
    "\u200b",
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "x" * 256,
    "x" * 257,
    "-lead",
    ".lead",
    "_lead",
    "a.b_c-d",
    0,
    1,
    -1,
    1.0,
    -0.0,
    0.5,
    True,
    False,
    None,
    [],
    {},
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    Raw("1e308"),
    Raw("1e309"),
    Raw("-1e400"),
    Raw("1E5"),
    Raw("1.0e-400"),
    Raw("10000000000000000000000"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-0"),
    "2026-11-30T09:30:00Z",
    "2026-11-30T09:30:00.123456Z",
    "2026-11-30T09:30:00.1234567Z",
    "2026-11-30t09:30:00z",
    "2026-11-30 09:30:00Z",
    "2026-11-30T09:30:00+05:30",
    "2026-11-30T09:30:00-00:00",
    "2026-11-30T09:30:00+23:59",
    "2026-11-30T09:30:00+24:00",
    "2026-11-30T09:30:00",
    "2026-11-30T24:00:00Z",
    "2026-11-30T23:59:60Z",
    "2026-02-30T09:30:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-11-30T09:30Z",
    "2026-11-30T09:30:00,5Z",
    "2026-11-30T09:30:00+0530",
    "2026-11-30T09:30:00+05",
    "20261130T093000Z",
    "\uff12\uff10\uff12\uff16-11-30T09:30:00Z",
    "2026-11-30T09:30:00Z\n",
    "1700000000",
    1700000000,
]


def fields_of(event_type: type[Event]) -> list[str]:
    return [*WIRE[event_type], "features.a", "features.", "features.\x7f", "features.é ü"]


@pytest.mark.parametrize("event_type", HOT, ids=lambda t: t.__name__)
def test_edge_values_in_every_field_are_decided_the_same_way(event_type: type[Event]) -> None:
    accepted = 0
    for field in fields_of(event_type):
        if field.startswith("features") and "features" not in WIRE[event_type]:
            continue
        for value in EDGES:
            accepted += same_as_pydantic(wire_payload(event_type, {field: value}), event_type)
    assert accepted > 30  # the edges the fast reader takes (e.g. good ids, numbers, targets, Z and offset times)


def test_seeded_random_damage_is_decided_the_same_way() -> None:
    rng = random.Random(20_261_130)
    decided = {"fast": 0, "pydantic accepts": 0, "refused": 0}
    for _ in range(3_000):
        event_type = rng.choice(HOT)
        changes = {rng.choice(fields_of(event_type)): rng.choice(EDGES) for _ in range(rng.randint(1, 3))}
        if "features" not in WIRE[event_type] or "features" in changes:  # no feature of a replaced dict
            changes = {k: v for k, v in changes.items() if not k.startswith("features.")}
        if "features" not in WIRE[event_type]:
            changes.pop("features", None)
        payload = wire_payload(event_type, changes)
        if rng.random() < 0.1:  # a duplicate key, the last one wins for both
            payload = payload[:-1] + b', "model_id": "dup"}'
        if same_as_pydantic(payload, event_type):
            decided["fast"] += 1
        elif outcome(payload, event_type, fast_path=False)[0] == "accepted":
            decided["pydantic accepts"] += 1
        else:
            decided["refused"] += 1
    assert decided["fast"] > 100 and decided["refused"] > 1_000  # both sides of the line were exercised


@pytest.mark.parametrize("event", [e for _, e in VALID_EXAMPLES], ids=repr)
def test_written_json_reads_back_as_the_same_event_with_the_same_types(event: Event) -> None:
    written = fast.write(event)
    assert decode(written, type(event)) == event
    assert typed(json.loads(written)) == typed(json.loads(event.model_dump_json()))


def test_written_numbers_keep_their_value_and_type_over_the_whole_range() -> None:
    rng = random.Random(7)
    example = dict(VALID_EXAMPLES)["labeled-classification"]
    assert isinstance(example, LabeledExample)
    for _ in range(2_000):
        value = rng.choice(
            [rng.uniform(-1, 1), rng.gauss(0, 1) * 10 ** rng.randint(-300, 300), float(rng.randint(-9, 9))]
        )
        event = example.model_copy(update={"features": {"v": value}, "prediction": value, "label": rng.randint(-9, 9)})
        written = fast.write(event)
        assert typed(json.loads(written)) == typed(json.loads(event.model_dump_json()))
        assert decode(written, LabeledExample) == event


def typed(value: Any) -> Any:
    """JSON values with their type kept apart (1, 1.0 and true compare equal in Python)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def test_trusted_builds_what_model_construct_builds() -> None:
    for _, event in VALID_EXAMPLES:
        values = dict(event.__dict__)
        built = fast.trusted(type(event), values)
        assert built == event == type(event).model_construct(**values)
        assert built.model_fields_set == set(type(event).model_fields)
        assert built.model_dump_json() == event.model_dump_json()


def test_only_the_hot_types_are_read_fast() -> None:
    assert {t for t in EVENT_TYPES if fast.readable(t)} == set(HOT)
