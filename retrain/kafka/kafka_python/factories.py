"""The adapter's factories (what :mod:`retrain.kafka` calls), kafka-python's I/O threads' switch interval, and the
benchmarks' raw consume baseline."""

from __future__ import annotations

import sys
from typing import Any

from retrain.kafka.kafka_python.administration import KafkaPythonAdmin
from retrain.kafka.kafka_python.consuming import KafkaPythonConsumer
from retrain.kafka.kafka_python.failures import translated
from retrain.kafka.kafka_python.producing import KafkaPythonProducer
from retrain.kafka.kafka_python.raw_clients import raw_admin, raw_consumer, raw_producer
from retrain.settings import KafkaSettings


@translated
def producer(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> KafkaPythonProducer:
    _longer_switch_interval()  # the producer's sender is a Python thread too
    overrides: dict[str, Any] = {"linger_ms": linger_ms}
    if batch_bytes is not None:
        overrides["batch_size"] = batch_bytes
    if max_request_bytes is not None:
        overrides["max_request_size"] = max_request_bytes
    if transactional_id is not None:
        overrides["transactional_id"] = transactional_id
    return KafkaPythonProducer(raw_producer(kafka_settings, **overrides))


# kafka-python 3 runs its network I/O on a Python thread, which takes the GIL from the polling thread at every
# switch interval (5 ms by default). At 50 ms raw consume measured 35,681-40,471 records/s here, against
# 16,459-25,549 at 5 ms; the I/O thread still gets the GIL within 50 ms.
SWITCH_INTERVAL_S = 0.05


def _longer_switch_interval() -> None:
    sys.setswitchinterval(max(sys.getswitchinterval(), SWITCH_INTERVAL_S))


@translated
def consumer(
    kafka_settings: KafkaSettings,
    group_id: str | None,
    *,
    max_poll_records: int,
    max_poll_interval_ms: int | None,
) -> KafkaPythonConsumer:
    _longer_switch_interval()
    overrides: dict[str, Any] = {"max_poll_records": max_poll_records}
    if max_poll_interval_ms is not None:
        overrides["max_poll_interval_ms"] = max_poll_interval_ms
    return KafkaPythonConsumer(raw_consumer(kafka_settings, group_id, **overrides))


@translated
def admin(kafka_settings: KafkaSettings, *, request_timeout_ms: int | None) -> KafkaPythonAdmin:
    overrides = {} if request_timeout_ms is None else {"request_timeout_ms": request_timeout_ms}
    return KafkaPythonAdmin(raw_admin(kafka_settings, **overrides))


def raw_consume_seconds(kafka_settings: KafkaSettings, topics: list[str], total: int) -> float:
    """The benchmarks' baseline: kafka-python alone polling ``total`` records of ``topics`` (clock from the first).

    Under the same switch interval as the services' clients, so that the ratios compare like with like.
    """
    import time

    _longer_switch_interval()
    import uuid

    consumer = raw_consumer(kafka_settings, f"raw-{uuid.uuid4().hex[:8]}", *topics, max_poll_records=1_000)
    seen, size, started = 0, 0, None
    while seen < total:
        batches = consumer.poll(timeout_ms=500, max_records=1_000)
        if batches and started is None:
            started = time.perf_counter()
        for records in batches.values():
            for record in records:
                size += len(record.value)
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close(autocommit=False)
    return elapsed
