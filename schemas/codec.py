"""One serializer and one deserializer for every event: UTF-8 JSON, validated on the way in.

Every way a payload can be wrong ends in :class:`EventDecodeError`, whose ``reason`` is a short stable code
(for dead-letter headers and metric labels) and whose message says what was wrong and where.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from retrain.schemas import fast
from retrain.schemas.events import Event

E = TypeVar("E", bound=Event)

# Kafka's default message size limit; anything larger did not come from a well-behaved producer.
MAX_PAYLOAD_BYTES = 1024 * 1024
_MAX_ERRORS_IN_MESSAGE = 5


class EventDecodeError(ValueError):
    """A payload that is not a valid event of the expected type.

    ``reason`` is one of: ``empty``, ``too_large``, ``invalid_utf8``, ``invalid_json``, ``not_an_object``,
    ``unsupported_schema_version``, ``validation``.
    """

    def __init__(self, event_type: str, reason: str, detail: str) -> None:
        super().__init__(f"invalid {event_type}: {detail}")
        self.event_type = event_type
        self.reason = reason
        self.detail = detail


def encode(event: Event) -> bytes:
    """Serialize an event to compact UTF-8 JSON (what goes into a Kafka record's value)."""
    return fast.write(event)


def decode(payload: bytes | bytearray | memoryview | None, event_type: type[E], *, fast_path: bool = True) -> E:
    """Parse and validate ``payload`` as ``event_type``; raise :class:`EventDecodeError` if it is not one.

    ``fast_path=False``: by the pydantic model alone (the reference :mod:`schemas.fast` is tested against).
    """
    name = event_type.__name__
    if payload is None or len(payload) == 0:
        raise EventDecodeError(name, "empty", "the record has no value")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EventDecodeError(name, "too_large", f"{len(payload)} bytes is over the limit of {MAX_PAYLOAD_BYTES}")
    if fast_path and fast.readable(event_type):
        event = fast.read(payload, event_type)
        if event is not None:
            return event
    data = bytes(payload)
    try:
        event = event_type.model_validate_json(data)
    except ValidationError as error:
        raise _explain(name, data, event_type, error) from error
    missing = [field for field in event_type.WIRE_REQUIRED if field not in event.model_fields_set]
    if missing:
        detail = "; ".join(f"{field}: Field required" for field in missing)
        raise EventDecodeError(
            name, "validation", f"{detail} (this reader understands schema_version {event.SCHEMA_VERSION})"
        )
    return event


def _explain(name: str, data: bytes, event_type: type[Event], error: ValidationError) -> EventDecodeError:
    errors = error.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "", "loc": (), "msg": str(error)}
    if first["type"] == "json_invalid":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad_utf8:
            return EventDecodeError(
                name, "invalid_utf8", f"not UTF-8 text ({bad_utf8.reason} at byte {bad_utf8.start})"
            )
        return EventDecodeError(name, "invalid_json", f"not JSON ({first['msg']})")
    if first["type"] == "model_type" and not first["loc"]:
        return EventDecodeError(name, "not_an_object", "the JSON value is not an object")
    version_errors = [e for e in errors if e["loc"][:1] == ("schema_version",)]
    version = _version_in(data) if version_errors else None
    # Another version: any other integer (too large for pydantic's Literal check included) or a string.
    other_version = isinstance(version, int | str) and not isinstance(version, bool)
    if any(e["type"] == "literal_error" for e in version_errors) or (version_errors and other_version):
        return EventDecodeError(
            name,
            "unsupported_schema_version",
            f"schema_version {_shorten(version)} is not supported (this reader understands "
            f"{event_type.SCHEMA_VERSION})",
        )
    return EventDecodeError(name, "validation", _summarize(errors))


def _version_in(data: bytes) -> Any:
    try:
        return json.loads(data).get("schema_version")
    except (ValueError, AttributeError):
        return "?"


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _summarize(errors: list[Any]) -> str:
    parts = []
    for item in errors[:_MAX_ERRORS_IN_MESSAGE]:
        where = ".".join(str(part) for part in item["loc"]) or "(event)"
        parts.append(f"{where}: {item['msg']}")
    more = len(errors) - _MAX_ERRORS_IN_MESSAGE
    if more > 0:
        parts.append(f"and {more} more error(s)")
    return "; ".join(parts)
