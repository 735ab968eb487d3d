"""librdkafka properties for the pipeline's producers and consumers, and librdkafka's logs and error events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from retrain.kafka.confluent.failures import failure
from retrain.kafka.errors import KafkaFailure
from retrain.settings import KafkaSettings

# The adapter's one logger (librdkafka's log lines go to it too), under the adapter package's name.
log = logging.getLogger("retrain.kafka.confluent")


def client_config(kafka_settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties common to producers and consumers. The only place a secret is revealed: never log it."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(kafka_settings.bootstrap_list),
        "client.id": kafka_settings.client_id,
        "security.protocol": kafka_settings.security_protocol.lower(),
        "socket.timeout.ms": kafka_settings.request_timeout_ms,
    }
    if kafka_settings.security_protocol.startswith("SASL_"):
        assert kafka_settings.sasl_password is not None  # checked by KafkaSettings
        config["sasl.mechanism"] = kafka_settings.sasl_mechanism
        config["sasl.username"] = kafka_settings.sasl_username
        config["sasl.password"] = kafka_settings.sasl_password.get_secret_value()
    if kafka_settings.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = "https" if kafka_settings.ssl_check_hostname else "none"
        for key, path in (
            ("ssl.ca.location", kafka_settings.ssl_cafile),
            ("ssl.certificate.location", kafka_settings.ssl_certfile),
            ("ssl.key.location", kafka_settings.ssl_keyfile),
        ):
            if path is not None:
                config[key] = str(path)
        if kafka_settings.ssl_password is not None:
            config["ssl.key.password"] = kafka_settings.ssl_password.get_secret_value()
    return config


def producer_config(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(kafka_settings),
        "enable.idempotence": True,
        "acks": "all",
        # The Java client's partitioner (librdkafka's default is CRC32): co-partitioned topics written by either
        # client put one key in one partition number. Null keys go to a random partition (Java: sticky).
        "partitioner": "murmur2_random",
        "linger.ms": linger_ms,
        "request.timeout.ms": kafka_settings.request_timeout_ms,
    }
    if batch_bytes is not None:
        config["batch.size"] = batch_bytes
    if max_request_bytes is not None:
        config["message.max.bytes"] = max_request_bytes
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    return config


def consumer_config(
    kafka_settings: KafkaSettings, group_id: str | None, *, max_poll_interval_ms: int | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(kafka_settings),
        # librdkafka wants a group id even for a reader that is assigned partitions by hand; it never commits.
        "group.id": group_id if group_id is not None else f"retrain-groupless-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # Partition n of every subscribed topic to one member (librdkafka's default adds roundrobin).
        "partition.assignment.strategy": "range",
        "session.timeout.ms": kafka_settings.session_timeout_ms,
        # A broker stopping (a restart of a one-broker cluster) can answer a metadata request with no broker at
        # all: librdkafka then drops the brokers it knew and has none left until it re-bootstraps from
        # bootstrap.servers, by default 5 minutes later. A consumer does it once it has been without metadata as
        # long as its group session lasts. (The producer replaces itself instead: see ConfluentProducer.)
        "metadata.recovery.rebootstrap.trigger.ms": kafka_settings.session_timeout_ms,
        # librdkafka defaults to read_committed; kafka-python (and this pipeline outside exactly_once) does not.
        "isolation.level": (
            "read_committed" if kafka_settings.processing_guarantee == "exactly_once" else "read_uncommitted"
        ),
    }
    if max_poll_interval_ms is not None:
        # librdkafka refuses a poll interval shorter than the session timeout.
        config["max.poll.interval.ms"] = max(max_poll_interval_ms, kafka_settings.session_timeout_ms)
    return config


def _logging_callbacks(
    note_fatal: Callable[[KafkaFailure], None] | None = None, all_brokers_down: Callable[[], None] | None = None
) -> dict[str, Any]:
    """librdkafka's log lines through Python logging, and its error events (a broker away: no exception) logged.

    ``note_fatal`` hears of a fatal error, ``all_brokers_down`` of every known broker being unreachable at once.
    """

    def error_cb(error: KafkaError) -> None:
        if error.fatal() and note_fatal is not None:
            note_fatal(failure(error))
        if error.code() == KafkaError._ALL_BROKERS_DOWN and all_brokers_down is not None:
            all_brokers_down()
        log.warning("librdkafka: %s", error.str() or error.name())

    return {"logger": log, "error_cb": error_cb}
