"""kafka-python clients built from the settings, with the defaults this pipeline relies on."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
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


def make_service_producer(kafka: KafkaSettings, service: str, group_id: str, **overrides: Any) -> KafkaProducer:
    """A service's producer: transactional (and initialised) under ``exactly_once``, else :func:`make_producer`.

    ``init_transactions`` fences an earlier producer with the same transactional id (a crashed instance being
    restarted) and aborts its open transaction, so nothing it wrote after its last commit is ever read.
    """
    if kafka.processing_guarantee != "exactly_once":
        return make_producer(kafka, **overrides)
    transactional_id = kafka.transactional_id or f"retrain-{service}-{group_id}-{socket.gethostname()}"
    producer = make_producer(kafka, transactional_id=transactional_id, **overrides)
    try:
        producer.init_transactions()
    except BaseException:
        producer.close(timeout=0)  # its IO thread would outlive the failed attempt
        raise
    return producer


def service_producers(
    kafka: KafkaSettings, service: str, group_id: str, **overrides: Any
) -> tuple[KafkaProducer, Callable[[], KafkaProducer] | None]:
    """The service's producer, and under ``exactly_once`` how to make its replacement when the broker fences it."""
    make = partial(make_service_producer, kafka, service, group_id, **overrides)
    return make(), (make if kafka.processing_guarantee == "exactly_once" else None)


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
    if kafka.processing_guarantee == "exactly_once":
        config["isolation_level"] = "read_committed"  # never an aborted or still-open transaction's records
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def make_admin(kafka: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**kafka.client_config(), **overrides})
