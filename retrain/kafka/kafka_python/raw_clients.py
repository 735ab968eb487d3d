"""kafka-python's own clients configured with the pipeline's defaults (tests and benchmarks use them directly)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor

from retrain.settings import KafkaSettings


def raw_producer(kafka_settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent kafka-python producer that waits for all in-sync replicas (no silent loss)."""
    config: dict[str, Any] = {
        **kafka_settings.client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def raw_consumer(kafka_settings: KafkaSettings, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer that commits only when told to and assigns partitions by range."""
    config: dict[str, Any] = {
        **kafka_settings.client_config(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "partition_assignment_strategy": [RangePartitionAssignor],
        # kafka-python 3's group leader can assign before it has the subscribed topics' metadata and hand out
        # nothing; it rebalances when its metadata changes, so refresh metadata often (default: 5 minutes).
        "metadata_max_age_ms": 5_000,
    }
    if group_id is not None:
        config["session_timeout_ms"] = kafka_settings.session_timeout_ms
    if kafka_settings.processing_guarantee == "exactly_once":
        config["isolation_level"] = "read_committed"
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def raw_admin(kafka_settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**kafka_settings.client_config(), **overrides})
