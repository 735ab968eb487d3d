"""Benchmark: labeled examples per second through the detector versus the raw client, for each Kafka client.

All read the same records (N predictions and N labels, SEA features, keyed by one model) from the same broker in
one run. The raw consumer is the client library alone: it only polls and touches each value. The detector
decodes, joins, runs two drift detectors, writes every LabeledExample and flushes before committing: with the join
in memory and no state snapshots; in memory with its state snapshots (one signed snapshot of the partition per
commit); and with the default state store on disk (pending records, changelog, the models' signed watches: see
docs/state-store.md), whose ratio to the in-memory detector with snapshots is printed, with its changelog records per
labeled example. Each detector run also prints its CPU per labeled example (from /proc: this process, its client's
and RocksDB's threads included, and the broker's when this benchmark started it). Raw kafka-python is the steady
baseline the ratios are taken against (librdkafka's raw rate depends on how much it prefetched). Usage:

    .venv/bin/python -m bench.detector_throughput [--examples 50000] [--clients kafka-python,confluent-kafka]

Without --bootstrap it starts the project's broker on 127.0.0.1:19392 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.kafka import benchmark_kafka, broker_pid, fresh_topics
from bench.services import cpu_seconds
from retrain.consumers.wiring import run_detector
from retrain.kafka import make_admin, make_producer
from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import LabeledExample, encode
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, RegistrySettings, Settings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics

ADAPTERS = {"kafka-python": "retrain.kafka.kafka_python", "confluent-kafka": "retrain.kafka.confluent"}


def produce(kafka: KafkaSettings, topics: TopicSettings, n: int) -> None:
    stream = sea_stream(sea_model(), n=n, drift_at=None, model_id="bench")
    producer = make_producer(kafka, linger_ms=20, batch_bytes=512 * 1024)
    for item in stream:
        producer.send(topics.predictions, b"bench", encode(item.prediction))
    for item in stream:
        producer.send(topics.labels, b"bench", encode(item.label))
    producer.flush()
    producer.close()


def produce_seconds(kafka: KafkaSettings, topic: str, n: int) -> float:
    """The client's producer alone writing the detector's output: n LabeledExamples, encoded beforehand, flushed."""
    stream = sea_stream(sea_model(), n=n, drift_at=None, model_id="bench")
    values = [
        encode(
            LabeledExample(
                **item.prediction.model_dump(exclude={"timestamp"}),
                label=item.label.label,
                prediction_timestamp=item.prediction.timestamp,
                label_timestamp=item.label.timestamp,
            )
        )
        for item in stream
    ]
    producer = make_producer(kafka, linger_ms=50, batch_bytes=1024 * 1024)  # the detector's producer settings
    started = time.perf_counter()
    for value in values:
        producer.send(topic, b"bench", value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return elapsed


def detector_seconds(
    kafka: KafkaSettings,
    topics: TopicSettings,
    n: int,
    snapshots: bool,
    max_poll_records: int = 1_000,
    state_store: str = "memory",
    broker: int | None = None,
) -> Run:
    # State topics of its own: a run restoring an earlier run's state would take its joins for duplicates.
    run = uuid.uuid4().hex[:8]
    topics = topics.model_copy(
        update={
            "detector_state": f"{topics.detector_state}-{run}",
            "detector_changelog": f"{topics.detector_changelog}-{run}",
        }
    )
    admin = make_admin(kafka)
    try:
        ensure_topics(admin, pipeline_topics(topics))
    finally:
        admin.close()
    settings = Settings(
        kafka=kafka,
        topics=topics,
        broker=BrokerSettings(),
        detector=DetectorSettings(
            group_id=f"detector-{run}",
            state_snapshots=snapshots,
            max_poll_records=max_poll_records,
            state_store=state_store,
            state_dir=Path(tempfile.mkdtemp(prefix="bench-state-")),
        ),
        registry=RegistrySettings(hmac_key="a benchmark key that signs the snapshots" if snapshots else None),
    )
    registry = CollectorRegistry()
    loop = run_detector(settings, registry=registry, serve=False)
    loop.subscribe()
    started, cpu = None, (0.0, 0.0)
    while (registry.get_sample_value("retrain_joins_total", {"outcome": "joined"}) or 0) < n:
        if loop.run_once() and started is None:
            started = time.perf_counter()
            cpu = (cpu_seconds(os.getpid()), cpu_seconds(broker) if broker else 0.0)
    elapsed = time.perf_counter() - (started or time.perf_counter())  # run_once flushed the outputs
    run = Run(
        elapsed,
        cpu_seconds(os.getpid()) - cpu[0],
        (cpu_seconds(broker) - cpu[1]) if broker else 0.0,
        registry.get_sample_value("retrain_state_changelog_records_total") or 0.0,
    )
    loop.stop()
    loop._finish()
    shutil.rmtree(settings.detector.state_dir, ignore_errors=True)
    return run


@dataclass
class Run:
    seconds: float
    cpu_s: float  # this process, its client's and RocksDB's threads included
    broker_cpu_s: float
    changelog_records: float

    def cpu(self, n: int) -> str:
        return (
            f"CPU per labeled example: detector {self.cpu_s / n * 1e6:.0f} us, "
            f"broker {self.broker_cpu_s / n * 1e6:.0f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    parser.add_argument("--bootstrap")
    parser.add_argument("--max-poll-records", type=int, default=DetectorSettings().max_poll_records)
    args = parser.parse_args()
    records = 2 * args.examples
    print(
        f"records: {records} ({args.examples} predictions + {args.examples} labels), "
        f"detector batches of up to {args.max_poll_records} records"
    )
    with benchmark_kafka(args.bootstrap, port=19392) as kafka:
        topics = fresh_topics(kafka)
        produce(kafka, topics, args.examples)
        streams = [topics.predictions, topics.labels]
        baseline = importlib.import_module(ADAPTERS["kafka-python"]).raw_consume_seconds(kafka, streams, records)
        print(f"raw kafka-python consume (baseline): {records / baseline:,.0f} records/s ({baseline:.2f} s)")
        for client in args.clients.split(","):
            compare_client(kafka, client, topics, args, baseline)


def compare_client(
    kafka: KafkaSettings, client: str, topics: TopicSettings, args: argparse.Namespace, baseline: float
) -> None:
    """One client's raw consume, its producer alone and the three detector runs, printed against ``baseline``."""
    records, streams = 2 * args.examples, [topics.predictions, topics.labels]
    settings = kafka.model_copy(update={"client": client})
    raw = importlib.import_module(ADAPTERS[client]).raw_consume_seconds(settings, streams, records)
    written = produce_seconds(settings, topics.labeled_examples, args.examples)
    batch = args.max_poll_records
    broker = broker_pid(19392) if args.bootstrap is None else None
    runs = {
        name: detector_seconds(
            settings,
            topics,
            args.examples,
            snapshots=name != "plain",
            max_poll_records=batch,
            state_store="rocksdb" if name == "stored" else "memory",
            broker=broker,
        )
        for name in ("plain", "snapshots", "stored")
    }
    detector, snapshots, stored = (runs[name].seconds for name in ("plain", "snapshots", "stored"))
    print(f"[{client}] raw consume: {records / raw:,.0f} records/s ({raw:.2f} s)")
    print(
        f"[{client}] its producer alone, writing the {args.examples} LabeledExamples: "
        f"{args.examples / written:,.0f} records/s ({written:.2f} s, {written / args.examples * 1e6:.1f} us "
        f"each); raw consume + produce alone is {raw / (raw + written):.2f} of raw consume: the most the "
        "detector's ratio could be"
    )
    print(
        f"[{client}] detector (join, ADWIN + PageHinkley, LabeledExamples written and flushed): "
        f"{records / detector:,.0f} records/s = {args.examples / detector:,.0f} labeled examples/s "
        f"({detector:.2f} s); ratio to its raw consume {raw / detector:.2f}; to raw kafka-python "
        f"{baseline / detector:.2f}; {runs['plain'].cpu(args.examples)}"
    )
    print(
        f"[{client}] detector with state snapshots: {records / snapshots:,.0f} records/s = "
        f"{args.examples / snapshots:,.0f} labeled examples/s ({snapshots:.2f} s); ratio with/without "
        f"snapshots: {detector / snapshots:.2f}; {runs['snapshots'].cpu(args.examples)}"
    )
    print(
        f"[{client}] detector with the state store on disk (the default): {records / stored:,.0f} records/s = "
        f"{args.examples / stored:,.0f} labeled examples/s ({stored:.2f} s); ratio to its raw consume "
        f"{raw / stored:.2f}; to the in-memory detector with snapshots {snapshots / stored:.2f}; "
        f"{runs['stored'].cpu(args.examples)}; changelog records per labeled example "
        f"{runs['stored'].changelog_records / args.examples:.2f}"
    )


if __name__ == "__main__":
    main()
