"""The Kafka client seam: the only package that imports a Kafka client library.

``RETRAIN_KAFKA_CLIENT`` picks the adapter: ``kafka-python`` (the default) or ``confluent-kafka``
(``pip install kafka-retrain[confluent]``). Both give the same :class:`Consumer`, :class:`Producer` and admin,
raise the same errors (:mod:`retrain.kafka.errors`) and keep the pipeline's defaults: idempotent producers with
acks=all and the Java client's murmur2 partitioner, consumers that commit only when told and assign by range.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

from retrain.kafka.errors import (
    FatalFailure,
    KafkaFailure,
    ProducerFenced,
    PublishFailed,
    RetriableFailure,
    TopicAlreadyExists,
)
from retrain.kafka.reading import Delivered, read_at, read_partitions_to_end, read_to_end, send_and_wait
from retrain.kafka.types import Consumer, Headers, OnDelivery, Producer, RebalanceListener, Record, TopicPartition
from retrain.settings import KafkaSettings

__all__ = [
    "Consumer",
    "Delivered",
    "FatalFailure",
    "Headers",
    "KafkaFailure",
    "OnDelivery",
    "Producer",
    "ProducerFenced",
    "PublishFailed",
    "RebalanceListener",
    "Record",
    "RetriableFailure",
    "TopicAlreadyExists",
    "TopicPartition",
    "make_admin",
    "make_consumer",
    "make_producer",
    "make_service_producer",
    "read_at",
    "read_partitions_to_end",
    "read_to_end",
    "send_and_wait",
    "service_producers",
]


def _adapter(kafka: KafkaSettings) -> ModuleType:
    if kafka.client == "confluent-kafka":
        try:
            from retrain.kafka import confluent
        except ImportError as error:  # the optional extra is not installed
            raise FatalFailure(
                f"RETRAIN_KAFKA_CLIENT=confluent-kafka needs the confluent-kafka package "
                f"(pip install 'kafka-retrain[confluent]'): {error}"
            ) from error
        return confluent
    from retrain.kafka import kafka_python

    return kafka_python


def make_producer(
    kafka: KafkaSettings,
    *,
    linger_ms: int = 5,
    batch_bytes: int | None = None,
    max_request_bytes: int | None = None,
    transactional_id: str | None = None,
) -> Producer:
    """An idempotent producer (acks=all, murmur2 partitioning); transactional when given an id (not initialised)."""
    return _adapter(kafka).producer(
        kafka,
        linger_ms=linger_ms,
        batch_bytes=batch_bytes,
        max_request_bytes=max_request_bytes,
        transactional_id=transactional_id,
    )


def make_service_producer(kafka: KafkaSettings, service: str, group_id: str, **tuning: Any) -> Producer:
    """A service's producer: transactional (and initialised) under ``exactly_once``, else :func:`make_producer`.

    ``init_transactions`` fences an earlier producer with the same transactional id (a crashed instance being
    restarted) and aborts its open transaction, so nothing it wrote after its last commit is ever read.
    """
    if kafka.processing_guarantee != "exactly_once":
        return make_producer(kafka, **tuning)
    transactional_id = kafka.transactional_id or f"retrain-{service}-{group_id}-{socket.gethostname()}"
    producer = make_producer(kafka, transactional_id=transactional_id, **tuning)
    try:
        producer.init_transactions()
    except BaseException:
        producer.close(timeout_s=0)  # its threads would outlive the failed attempt
        raise
    return producer


def service_producers(
    kafka: KafkaSettings, service: str, group_id: str, **tuning: Any
) -> tuple[Producer, Callable[[], Producer] | None]:
    """The service's producer, and under ``exactly_once`` how to make its replacement when the broker fences it."""
    make = partial(make_service_producer, kafka, service, group_id, **tuning)
    return make(), (make if kafka.processing_guarantee == "exactly_once" else None)


def make_consumer(
    kafka: KafkaSettings,
    group_id: str | None,
    *,
    max_poll_records: int = 1_000,
    max_poll_interval_ms: int | None = None,
) -> Consumer:
    """A consumer that commits only when told to, reads from the earliest offset when it has no commit, assigns
    partitions by range (so co-partitioned topics meet in one member) and, under ``exactly_once``, reads committed
    records only. ``group_id`` None: a group-less reader that is assigned partitions by hand."""
    return _adapter(kafka).consumer(
        kafka, group_id, max_poll_records=max_poll_records, max_poll_interval_ms=max_poll_interval_ms
    )


def make_admin(kafka: KafkaSettings, *, request_timeout_ms: int | None = None) -> Any:
    """Topic administration (creation and partition counts); kafka-python's admin client for either client."""
    from retrain.kafka import kafka_python

    return kafka_python.admin(kafka, request_timeout_ms=request_timeout_ms)
