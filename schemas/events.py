"""The events that flow through the pipeline, one pydantic model each.

Every event carries ``schema_version``. On the wire it is required (a message without it is refused, so
that a future version 2 can never be mistaken for version 1); in Python it defaults to the current one.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from retrain.schemas.types import (
    MAX_TEXT_LENGTH,
    Count,
    EventId,
    Features,
    FiniteFloat,
    Metrics,
    ModelId,
    ModelVersion,
    Name,
    Sha256,
    Target,
    Text,
    UtcTimestamp,
    utc_now,
)

# Kafka's default max.message.bytes is about 1 MiB and a dead letter carries the original bytes in base64
# (4/3 larger): keep at most 512 KiB of them so the envelope itself always fits.
MAX_DEAD_LETTER_PAYLOAD_BYTES = 512 * 1024


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _wire_required_fields(schema: dict[str, Any], model: type[Event]) -> None:
    required = schema.setdefault("required", [])
    for position, name in enumerate(model.WIRE_REQUIRED):
        if name not in required:
            required.insert(position, name)


def _integer_version(value: Any) -> Any:
    # Literal[1] alone would take JSON `true` (True == 1 in Python).
    if isinstance(value, bool):
        raise ValueError("schema_version must be an integer, not a boolean")
    return value


class Event(BaseModel):
    """Base of every event: immutable, no unknown fields, a schema version.

    ``schema_version`` is required on the wire (:func:`schemas.codec.decode` refuses a message without it, so
    that a future version 2 can never be mistaken for version 1); in Python it defaults to the current one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_wire_required_fields)

    SCHEMA_VERSION: ClassVar[int] = 1
    # Fields with a default in Python that a message on the wire must carry all the same: the version, and the
    # identity and time of events that are deduplicated (a redelivery must not get a fresh id when decoded).
    WIRE_REQUIRED: ClassVar[tuple[str, ...]] = ("schema_version",)
    schema_version: Annotated[Literal[1], BeforeValidator(_integer_version)] = 1


class ScoringRequest(Event):
    """Features to score with a model's version in service. Keyed by ``model_id`` on the scoring-requests topic.

    The producer assigns ``prediction_id``, so that the labels it sends later can name the prediction before it
    has been made; ``timestamp`` is the event time, which the prediction keeps.
    """

    prediction_id: EventId
    model_id: ModelId
    features: Features
    timestamp: UtcTimestamp


class PredictionEvent(Event):
    """A model scored one request. Keyed by ``model_id`` on the predictions topic."""

    prediction_id: EventId
    model_id: ModelId
    model_version: ModelVersion
    features: Features
    prediction: Target
    timestamp: UtcTimestamp


class LabelEvent(Event):
    """The ground truth for one earlier prediction, often minutes or days late. Keyed by ``model_id``."""

    prediction_id: EventId
    model_id: ModelId
    label: Target
    timestamp: UtcTimestamp


class LabeledExample(Event):
    """A prediction joined with its label: one training example and one point of the error stream."""

    prediction_id: EventId
    model_id: ModelId
    model_version: ModelVersion
    features: Features
    prediction: Target
    label: Target
    prediction_timestamp: UtcTimestamp
    label_timestamp: UtcTimestamp


class RetrainReason(StrEnum):
    DRIFT = "drift"
    PERFORMANCE = "performance"
    DATA_VOLUME = "data_volume"  # also the cold start: a model with no version yet
    SCHEDULE = "schedule"
    BUSINESS = "business"
    FEEDBACK = "feedback"
    MANUAL = "manual"


class StreamPosition(BaseModel):
    """Where in a topic something was seen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: Name
    partition: Count
    offset: Count
    timestamp: UtcTimestamp | None = None


class Evidence(BaseModel):
    """Why a retrain was asked for, in numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Name | None = Field(default=None, description="e.g. error_rate, accuracy, mae")
    before: FiniteFloat | None = None
    after: FiniteFloat | None = None
    window_width: Count | None = None
    examples_seen: Count | None = Field(default=None, description="Labeled examples since the last model")
    detectors: list[Name] = Field(default_factory=list, max_length=32)
    position: StreamPosition | None = None
    values: Metrics = Field(default_factory=dict)


class TrainingWindow(BaseModel):
    """Which labeled examples to train on: the most recent ``last_n``, and/or a time range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last_n: Count | None = Field(default=None, ge=1)
    start: UtcTimestamp | None = None
    end: UtcTimestamp | None = None

    @model_validator(mode="after")
    def _is_a_window(self) -> Self:
        if self.last_n is None and self.start is None:
            raise ValueError("a training window needs last_n or start")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"training window start {self.start} is after its end {self.end}")
        return self


class RetrainTrace(BaseModel):
    """Wall-clock moments of one retrain on its way through the loop, each by the clock of the service that saw it.

    The detector (or ``retrain trigger``) sets ``detected``; the trainer the rest, and its answer carries them all.
    When each event was published is its Kafka record's timestamp; when the new version served first, the scorer's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    detected: UtcTimestamp | None = Field(default=None, description="The retrain was asked for")
    received: UtcTimestamp | None = Field(default=None, description="The trainer read the retrain event")
    fit_started: UtcTimestamp | None = Field(default=None, description="Its fit went to a fit worker")
    fit_finished: UtcTimestamp | None = Field(default=None, description="The trainer had the fit's result")


class RetrainEvent(Event):
    """A request to retrain one model, from a detector, a rule, a schedule or a person."""

    WIRE_REQUIRED = ("schema_version", "event_id", "detected_at")

    event_id: EventId = Field(default_factory=_new_event_id)
    model_id: ModelId
    reason: RetrainReason
    detector: Name | None = Field(default=None, description="The detector or rule that fired; none if external")
    detected_at: UtcTimestamp = Field(default_factory=utc_now)
    model_version: ModelVersion | None = Field(default=None, description="Version in service when detected")
    evidence: Evidence = Field(default_factory=Evidence)
    suggested_window: TrainingWindow | None = None
    note: Text | None = None
    trace: RetrainTrace | None = None


class UpdateOutcome(StrEnum):
    PROMOTED = "promoted"  # a new version is in service
    REJECTED = "rejected"  # the challenger scored worse than the champion; the champion stays
    FAILED = "failed"  # no challenger could be trained (too few examples, one class, estimator error)
    ROLLED_BACK = "rolled_back"  # an earlier version is back in service


class ModelUpdatedEvent(Event):
    """The outcome of a retrain, a promotion or a rollback. ``promoted`` tells the scorer to swap."""

    WIRE_REQUIRED = ("schema_version", "event_id", "updated_at")

    event_id: EventId = Field(default_factory=_new_event_id)
    model_id: ModelId
    version: ModelVersion | None = Field(default=None, description="None when no version was registered")
    previous_version: ModelVersion | None = None
    promoted: StrictBool
    outcome: UpdateOutcome
    metrics: Metrics = Field(default_factory=dict)
    n_samples: Count | None = None
    artifact_uri: Text | None = None
    sha256: Sha256 | None = None
    trigger_event_id: EventId | None = None
    detail: Text | None = Field(default=None, description="Why a retrain was rejected or failed")
    updated_at: UtcTimestamp = Field(default_factory=utc_now)
    trace: RetrainTrace | None = Field(default=None, description="The retrain event's way to this answer")

    @model_validator(mode="after")
    def _outcome_is_consistent(self) -> Self:
        swaps = self.outcome in (UpdateOutcome.PROMOTED, UpdateOutcome.ROLLED_BACK)
        if self.promoted != swaps:
            raise ValueError(f"promoted={self.promoted} contradicts outcome={self.outcome.value}")
        if self.promoted and (self.version is None or self.artifact_uri is None or self.sha256 is None):
            raise ValueError("a promoted model needs version, artifact_uri and sha256")
        return self


class DeadLetter(Event):
    """A record that could not be processed, with where it came from and why. Keyed like the original."""

    WIRE_REQUIRED = ("schema_version", "event_id", "failed_at")

    event_id: EventId = Field(default_factory=_new_event_id)
    source_topic: Name
    source_partition: Count
    source_offset: Count
    source_timestamp: UtcTimestamp | None = None
    key_b64: str | None = Field(default=None, max_length=4 * MAX_TEXT_LENGTH, pattern=r"^[A-Za-z0-9+/]*={0,2}$")
    payload_b64: str = Field(max_length=(MAX_DEAD_LETTER_PAYLOAD_BYTES + 2) // 3 * 4, pattern=r"^[A-Za-z0-9+/]*={0,2}$")
    payload_size: Count
    error_reason: Name = Field(description="Short code, e.g. invalid_json, validation, unmatched_label")
    error_class: Name
    error_message: Text
    service: Name
    failed_at: UtcTimestamp = Field(default_factory=utc_now)

    @classmethod
    def for_record(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: BaseException,
        reason: str,
        service: str,
        timestamp: datetime | None = None,
    ) -> DeadLetter:
        """Wrap a failed record; an oversized payload is truncated (``payload_size`` keeps its real size)."""
        payload = value or b""
        message = str(error) or error.__class__.__name__
        return cls(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_timestamp=timestamp,
            key_b64=base64.b64encode(key[: MAX_TEXT_LENGTH * 3]).decode() if key is not None else None,
            payload_b64=base64.b64encode(payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]).decode(),
            payload_size=len(payload),
            error_reason=reason,
            error_class=f"{error.__class__.__module__}.{error.__class__.__qualname__}",
            error_message=message[:MAX_TEXT_LENGTH],
            service=service,
        )

    def payload(self) -> bytes:
        """The original record's value (truncated if it was over the size limit)."""
        return base64.b64decode(self.payload_b64)

    def original_key(self) -> bytes | None:
        return base64.b64decode(self.key_b64) if self.key_b64 is not None else None


EVENT_TYPES: tuple[type[Event], ...] = (
    ScoringRequest,
    PredictionEvent,
    LabelEvent,
    LabeledExample,
    RetrainEvent,
    ModelUpdatedEvent,
    DeadLetter,
)
