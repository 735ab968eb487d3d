"""Event schemas of the retraining pipeline: pydantic models, their JSON codec and exported JSON Schema."""

from retrain.schemas.codec import EventDecodeError, decode, encode
from retrain.schemas.events import (
    EVENT_TYPES,
    DeadLetter,
    Event,
    Evidence,
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    RetrainTrace,
    ScoringRequest,
    StreamPosition,
    TrainingWindow,
    UpdateOutcome,
)

__all__ = [
    "EVENT_TYPES",
    "DeadLetter",
    "Event",
    "EventDecodeError",
    "Evidence",
    "LabelEvent",
    "LabeledExample",
    "ModelUpdatedEvent",
    "PredictionEvent",
    "RetrainEvent",
    "RetrainReason",
    "RetrainTrace",
    "ScoringRequest",
    "StreamPosition",
    "TrainingWindow",
    "UpdateOutcome",
    "decode",
    "encode",
]
