"""kafka-python clients built from the settings, with the defaults this pipeline relies on."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor

from retrain.settings import KafkaSettings


def make_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (no silent loss)."""
    config: dict[str, Any] = {
        **kafka.client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(kafka: KafkaSettings, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits only when told to and assigns partitions by range.

    The range assignor gives partition n of every subscribed topic to the same member, which is what makes
    co-partitioned topics (predictions and labels) meet in one process; sticky and round-robin do not.
    """
    config: dict[str, Any] = {
        **kafka.client_config(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "partition_assignment_strategy": [RangePartitionAssignor],
        # kafka-python 3's group leader can assign before it has the subscribed topics' metadata and hand out
        # nothing; it rebalances when its metadata changes, so refresh metadata often (default: 5 minutes).
        "metadata_max_age_ms": 5_000,
    }
    if group_id is not None:
        config["session_timeout_ms"] = kafka.session_timeout_ms
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def make_admin(kafka: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**kafka.client_config(), **overrides})
