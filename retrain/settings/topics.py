"""Topic names and partition counts: ``RETRAIN_TOPIC_*``."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class TopicSettings(BaseSettings):
    """Topic names and partition counts.

    ``scoring-requests``, ``predictions``, ``labels`` and ``labeled-examples`` share ``stream_partitions`` so
    that they are co-partitioned: with the same key (``model_id``) and the same count, a model's predictions and
    labels land in the same partition number and meet in one consumer.
    """

    model_config = env_config("RETRAIN_TOPIC_")

    scoring_requests: str = Field(default="scoring-requests", description="`ScoringRequest`s: the scorer's input.")
    predictions: str = Field(default="predictions", description="`PredictionEvent`s: the scorer's output.")
    labels: str = Field(default="labels", description="`LabelEvent`s: the ground truth, joined by the detector.")
    labeled_examples: str = Field(
        default="labeled-examples", description="`LabeledExample`s: the detector's joins, the trainer's input."
    )
    retrain_events: str = Field(default="retrain-events", description="`RetrainEvent`s: requests to retrain a model.")
    model_updates: str = Field(
        default="model-updates", description="`ModelUpdatedEvent`s: retrain outcomes, promotions and rollbacks."
    )
    dead_letters: str = Field(default="dead-letters", description="`DeadLetter`s: records a service could not use.")
    # Compacted, co-partitioned with the streams: the detector's state snapshot of each partition.
    detector_state: str = Field(
        default="detector-state",
        description="Compacted, co-partitioned: the detector's state snapshot of each partition (memory mode).",
    )
    # Compacted, co-partitioned: the changelog of the detector's on-disk state stores (one per partition).
    detector_changelog: str = Field(
        default="detector-changelog",
        description="Compacted, co-partitioned: the changelog of the detector's state stores on disk.",
    )

    stream_partitions: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="Partitions of scoring-requests, predictions, labels, labeled-examples, detector-state and "
        "detector-changelog (co-partitioned).",
    )
    control_partitions: int = Field(
        default=1, ge=1, le=10_000, description="Partitions of retrain-events and model-updates."
    )
    dead_letter_partitions: int = Field(default=1, ge=1, le=10_000, description="Partitions of dead-letters.")
    replication_factor: int = Field(
        default=1, ge=1, le=32, description="Replication factor of every topic (3 on a real cluster)."
    )
    labeled_examples_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        ge=-1,
        description="Retention of labeled-examples: the trainer rebuilds its buffers from this topic after a restart.",
    )
    dead_letters_retention_ms: int = Field(
        default=14 * 24 * 3600 * 1000, ge=-1, description="Retention of dead-letters."
    )

    @model_validator(mode="after")
    def _names_are_distinct(self) -> TopicSettings:
        names = self.names()
        if len(set(names.values())) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self

    def names(self) -> dict[str, str]:
        """Role -> topic name, for every topic the pipeline uses."""
        return {
            "scoring_requests": self.scoring_requests,
            "predictions": self.predictions,
            "labels": self.labels,
            "labeled_examples": self.labeled_examples,
            "retrain_events": self.retrain_events,
            "model_updates": self.model_updates,
            "dead_letters": self.dead_letters,
            "detector_state": self.detector_state,
            "detector_changelog": self.detector_changelog,
        }
