"""The adapter's factories (what :mod:`retrain.kafka` calls), and the benchmarks' raw consume baseline."""

from __future__ import annotations

import uuid

import confluent_kafka

from retrain.kafka.confluent.configuration import _logging_callbacks, consumer_config, producer_config
from retrain.kafka.confluent.consuming import ConfluentConsumer
from retrain.kafka.confluent.failures import translated
from retrain.kafka.confluent.producing import TRANSACTION_TIMEOUT_S, ConfluentProducer
from retrain.settings import KafkaSettings


@translated
def producer(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> ConfluentProducer:
    config = producer_config(
        kafka_settings,
        linger_ms=linger_ms,
        batch_bytes=batch_bytes,
        max_request_bytes=max_request_bytes,
        transactional_id=transactional_id,
    )
    return ConfluentProducer(config, max(TRANSACTION_TIMEOUT_S, kafka_settings.request_timeout_ms / 1000))


@translated
def consumer(
    kafka_settings: KafkaSettings,
    group_id: str | None,
    *,
    max_poll_records: int,
    max_poll_interval_ms: int | None,
) -> ConfluentConsumer:
    # max_poll_records is the poll's own argument in the seam (consume's num_messages): nothing to configure.
    config = consumer_config(kafka_settings, group_id, max_poll_interval_ms=max_poll_interval_ms)
    raw = confluent_kafka.Consumer({**config, **_logging_callbacks()})
    lookup = {**consumer_config(kafka_settings, None, max_poll_interval_ms=None), **_logging_callbacks()}
    return ConfluentConsumer(
        raw, group_id, kafka_settings.request_timeout_ms / 1000, lambda: confluent_kafka.Consumer(lookup)
    )


def raw_consume_seconds(kafka_settings: KafkaSettings, topics: list[str], total: int) -> float:
    """The benchmarks' baseline: librdkafka alone consuming ``total`` records of ``topics`` (clock from the first)."""
    import time

    config = consumer_config(kafka_settings, f"raw-{uuid.uuid4().hex[:8]}", max_poll_interval_ms=None)
    consumer = confluent_kafka.Consumer(config)
    consumer.subscribe(topics)
    seen, size, started = 0, 0, None
    while seen < total:
        messages = consumer.consume(num_messages=1_000, timeout=0.5)
        if messages and started is None:
            started = time.perf_counter()
        for message in messages:
            if message.error() is None:
                size += len(message.value())
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return elapsed
