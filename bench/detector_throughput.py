"""Benchmark: labeled examples per second through the detector versus a raw kafka-python consumer.

Both read the same records (N predictions and N labels, SEA features, keyed by one model) from the same
broker in one run. The raw consumer only polls and touches each value; the detector decodes, joins, runs two
drift detectors, writes every LabeledExample and flushes before committing; then again with its state snapshots
on (one signed snapshot of the partition per commit). Usage:

    .venv/bin/python -m bench.detector_throughput [--examples 50000] [--bootstrap 127.0.0.1:9092]

Without --bootstrap it starts the project's broker on 127.0.0.1:19392 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import time
import uuid

from prometheus_client import CollectorRegistry

from bench.kafka import benchmark_kafka, fresh_topics
from consumers.detector import run_detector
from retrain.clients import make_consumer, make_producer
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, RegistrySettings, Settings, TopicSettings
from schemas import encode
from tests.integration.streams import sea_model, sea_stream


def produce(kafka: KafkaSettings, topics: TopicSettings, n: int) -> None:
    stream = sea_stream(sea_model(), n=n, drift_at=None, model_id="bench")
    producer = make_producer(kafka, linger_ms=20, batch_size=512 * 1024)
    for item in stream:
        producer.send(topics.predictions, key=b"bench", value=encode(item.prediction))
    for item in stream:
        producer.send(topics.labels, key=b"bench", value=encode(item.label))
    producer.flush()
    producer.close()


def raw_consume(kafka: KafkaSettings, topics: TopicSettings, total: int) -> float:
    consumer = make_consumer(
        kafka, f"raw-{uuid.uuid4().hex[:8]}", topics.predictions, topics.labels, max_poll_records=1_000
    )
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
    consumer.commit()
    consumer.close()
    return elapsed


def detector_consume(kafka: KafkaSettings, topics: TopicSettings, n: int, snapshots: bool) -> float:
    settings = Settings(
        kafka=kafka,
        topics=topics,
        broker=BrokerSettings(),
        detector=DetectorSettings(group_id=f"detector-{uuid.uuid4().hex[:8]}", state_snapshots=snapshots),
        registry=RegistrySettings(hmac_key="a benchmark key that signs the snapshots" if snapshots else None),
    )
    registry = CollectorRegistry()
    loop = run_detector(settings, registry=registry, serve=False)
    loop.subscribe()
    started = None
    while (registry.get_sample_value("retrain_joins_total", {"outcome": "joined"}) or 0) < n:
        if loop.run_once() and started is None:
            started = time.perf_counter()
    elapsed = time.perf_counter() - (started or time.perf_counter())  # run_once flushed the outputs
    loop.stop()
    loop._finish()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    with benchmark_kafka(args.bootstrap, port=19392) as kafka:
        topics = fresh_topics(kafka)
        produce(kafka, topics, args.examples)
        records = 2 * args.examples
        raw = raw_consume(kafka, topics, records)
        detector = detector_consume(kafka, topics, args.examples, snapshots=False)
        snapshots = detector_consume(kafka, topics, args.examples, snapshots=True)
    print(f"records: {records} ({args.examples} predictions + {args.examples} labels)")
    print(f"raw kafka-python consume: {records / raw:,.0f} records/s ({raw:.2f} s)")
    print(
        f"detector (join, ADWIN + PageHinkley, LabeledExamples written and flushed): "
        f"{records / detector:,.0f} records/s = {args.examples / detector:,.0f} labeled examples/s "
        f"({detector:.2f} s)"
    )
    print(f"ratio detector/raw: {raw / detector:.2f}")
    print(
        f"detector with state snapshots: {records / snapshots:,.0f} records/s ({snapshots:.2f} s); "
        f"ratio with/without snapshots: {detector / snapshots:.2f}"
    )


if __name__ == "__main__":
    main()
