"""``docs/events.md``: every event of :mod:`retrain.schemas.events`, field by field, from the same JSON Schema that
``retrain schemas export`` writes, and the topics they travel on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from retrain.producers.publisher import TOPIC_ROLE, dead_letter_headers
from retrain.reference.json_types import description, json_type
from retrain.reference.markdown import bullet, code, header, table, wrap
from retrain.schemas import types as schema_types
from retrain.schemas.codec import MAX_PAYLOAD_BYTES, EventDecodeError
from retrain.schemas.events import EVENT_TYPES, DeadLetter, Event
from retrain.settings import TopicSettings
from retrain.topics import pipeline_topics

# What the JSON Schema cannot say: the models' cross-field validators and the meaning of enumeration values.
_RULES = {
    "ModelUpdatedEvent": "`promoted` is true exactly when `outcome` is `promoted` or `rolled_back`, and a promoted "
    "update carries `version`, `artifact_uri` and `sha256`.",
    "TrainingWindow": "Needs `last_n` or `start`; `start` is not after `end`.",
}
_ENUM_NOTES = {
    "RetrainReason": {
        "drift": "the drift detectors saw the error rise (or, with `RETRAIN_DETECTOR_FEATURE_DRIFT`, a feature moved)",
        "performance": "the rolling accuracy or error crossed its threshold",
        "data_volume": "enough labeled examples since the last model; also the cold start of a model with no version",
        "business": "one of the reasons `retrain trigger` gives",
        "feedback": "one of the reasons `retrain trigger` gives",
        "manual": "one of the reasons `retrain trigger` gives",
    },
    "UpdateOutcome": {
        "promoted": "a new version is in service",
        "rejected": "the challenger did not win against the champion; the champion stays",
        "failed": "no challenger could be trained (too few examples, one class, an estimator error, a fit that died "
        "or timed out); the champion stays",
        "rolled_back": "an earlier version is back in service",
    },
}


def render_events() -> str:
    parts = _introduction() + _strictness() + _errors() + _topics()
    used: set[str] = set()
    definitions: dict[str, dict[str, Any]] = {}
    for event_type in EVENT_TYPES:
        schema = event_type.model_json_schema(mode="validation")
        parts += _event_section(event_type, schema, used)
        definitions.update(schema.get("$defs", {}))
    parts += ["", "## Nested types"]
    for name in sorted(definitions):
        parts += _nested_type_section(name, definitions[name], used)
    return "\n".join(parts) + "\n"


def _introduction() -> list[str]:
    return [
        header("schemas/events.py"),
        "# Events\n",
        wrap(
            f"""Every event is one Kafka record: UTF-8 JSON of at most {_size(MAX_PAYLOAD_BYTES)}, keyed by
            `model_id` (a `DeadLetter` by the key of the record it wraps). Every event carries `schema_version`
            (currently {Event.SCHEMA_VERSION}), required on the wire so that a later version can never be mistaken for
            this one. Unknown fields are refused. The pydantic models live in `schemas/events.py`; `retrain schemas
            export` writes their JSON Schema (draft 2020-12) to `schemas/json/`, so producers in other languages can
            validate what they send, and a test fails when those files are stale. This page is rendered from the same
            models."""
        ),
        "",
    ]


def _strictness() -> list[str]:
    return [
        "Strict where it matters:",
        "",
        bullet(
            f"""a feature value is a finite JSON number (no `NaN`, no `Infinity`), a boolean, a category (a string of
            at most {schema_types.MAX_CATEGORY_LENGTH} characters: `"1.5"` is a category, not a number) or `null`
            (missing); see [features.md](features.md);"""
        ),
        bullet(
            f"""a target (a prediction or a label) is a boolean, an integer within 64 bits, a finite number or a
            class name of 1 to {schema_types.MAX_CLASS_LABEL_LENGTH} characters;"""
        ),
        bullet(
            """a timestamp is an RFC 3339 string with a timezone offset, stored in UTC (naive times and epoch numbers
            are refused);"""
        ),
        bullet(
            f"""sizes are bounded: at most {schema_types.MAX_FEATURES} features, ids of up to
            {schema_types.MAX_ID_LENGTH} printable characters, a `model_id` of up to 64 characters of `[A-Za-z0-9._-]`
            (it becomes a directory name and a metric label), texts of up to {schema_types.MAX_TEXT_LENGTH}
            characters."""
        ),
        "",
    ]


def _errors() -> list[str]:
    """The decoding error, and the dead letters with their Kafka Connect headers."""
    sample = DeadLetter(
        source_topic="t", source_partition=0, source_offset=0, payload_b64="", payload_size=0,
        error_reason="r", error_class="c", error_message="m", service="s",
        failed_at=datetime(2000, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    headers = ", ".join(code(name) for name, _ in dead_letter_headers(sample))
    return [
        wrap(
            f"""Every way a payload can be wrong raises one error, `retrain.schemas.EventDecodeError`, whose message
            names the field (e.g. `invalid PredictionEvent: timestamp: Input should have timezone info`).
            {EventDecodeError.__doc__.split(chr(10), 1)[1]}"""
        ),
        "",
        wrap(
            f"""A record a service cannot use goes to the dead-letters topic as a [DeadLetter](#deadletter), with
            the original bytes, and with Kafka Connect's dead-letter headers so that existing tooling can read it:
            {headers}."""
        ),
        "",
    ]


def _topics() -> list[str]:
    return [
        "## Topics",
        "",
        wrap(
            """`retrain topics create` creates every topic below that is missing (running it twice creates nothing
            the second time) and reports an existing topic whose partition count breaks co-partitioning as an
            error. Co-partitioned topics have the same partition count, so with the same key a model's predictions
            and labels land in the same partition number, and the range assignor hands partition *n* of both to
            the same detector instance. Producers in other languages must partition like the Java client (murmur2):
            librdkafka's default (`consistent_random`, CRC32) does not, so with kcat or confluent-kafka set
            `partitioner=murmur2_random` (`kcat -X topic.partitioner=murmur2_random`)."""
        ),
        "",
        _topics_table(),
    ]


def _topics_table() -> str:
    defaults = TopicSettings.model_construct()  # the defaults, whatever RETRAIN_TOPIC_* says
    roles = defaults.names()
    events_by_topic: dict[str, list[str]] = {}
    for event_type, role in TOPIC_ROLE.items():
        events_by_topic.setdefault(roles[role], []).append(f"[{event_type.__name__}](#{event_type.__name__.lower()})")
    role_by_topic = {topic: role for role, topic in roles.items()}
    rows = []
    for spec in pipeline_topics(defaults):
        config = ", ".join(f"`{key}={value}`" for key, value in sorted(spec.config.items()))
        partitions = f"{spec.partitions}" + (", co-partitioned" if spec.co_partitioned else "")
        carried = ", ".join(events_by_topic.get(spec.name, [])) or "the detector's state"
        setting = f"`RETRAIN_TOPIC_{role_by_topic[spec.name].upper()}`"
        rows.append([code(spec.name), setting, partitions, config, carried])
    return table(["topic (default name)", "name from", "partitions (default)", "configuration", "carries"], rows)


def _event_section(event_type: type[Event], schema: dict[str, Any], used: set[str]) -> list[str]:
    topic = TopicSettings.model_construct().names()[TOPIC_ROLE[event_type]]
    parts = ["", f"## {event_type.__name__}", "", f"Topic `{topic}`.", "", wrap(event_type.__doc__ or ""), ""]
    parts.append(_fields_table(schema, list(event_type.model_fields), used))
    if event_type.__name__ in _RULES:
        parts += ["", wrap(_RULES[event_type.__name__])]
    return parts


def _nested_type_section(name: str, definition: dict[str, Any], used: set[str]) -> list[str]:
    parts = ["", f"### {name}", ""]
    if definition.get("description"):
        parts += [wrap(definition["description"]), ""]
    if "enum" in definition:
        notes = _ENUM_NOTES.get(name, {})
        parts += [
            bullet(f"`{value}`" + (f": {notes[value]}" if value in notes else "")) for value in definition["enum"]
        ]
    else:
        parts.append(_fields_table(definition, list(definition["properties"]), used))
        if name in _RULES:
            parts += ["", wrap(_RULES[name])]
    return parts


def _fields_table(schema: dict[str, Any], order: Sequence[str], used: set[str]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name in order:
        node = schema["properties"][name]
        if name in required:
            needed = "yes"
        elif "default" in node:
            needed = f"no (default {code(json.dumps(node['default']))})"
        else:
            needed = "no"
        rows.append([code(name), json_type(node, used), needed, description(node)])
    return table(["field", "type", "required", "description"], rows)


def _size(count: int) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count:,} bytes"
