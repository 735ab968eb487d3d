"""Turn consumed records into events, or into dead letters that say why they could not be."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from retrain.kafka import Record
from retrain.schemas import DeadLetter, Event, EventDecodeError, decode

E = TypeVar("E", bound=Event)


def decode_record(record: Record, event_type: type[E]) -> E:
    """The event in ``record``'s value; raises :class:`schemas.EventDecodeError` when there is none."""
    return decode(record.value, event_type)


def dead_letter_for(record: Record, error: Exception, service: str, reason: str | None = None) -> DeadLetter:
    """A dead letter that keeps the record's bytes, its position and the error (a decode error names its reason)."""
    if reason is None:
        reason = error.reason if isinstance(error, EventDecodeError) else "processing_error"
    timestamp = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp >= 0 else None
    return DeadLetter.for_record(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        error=error,
        reason=reason,
        service=service,
        timestamp=timestamp,
    )
