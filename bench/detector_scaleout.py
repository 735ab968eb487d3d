"""Benchmark: labeled examples per second of two detector processes in one group versus one, for each client.

The records are N predictions and N labels (SEA features) of ``--models`` model ids chosen so that each of the 6
partitions of ``predictions`` and ``labels`` is the home of the same number of models (the project partitions by
model_id with murmur2): with the range assignor each of two instances gets 3 of the 6. For each client and each
count of instances (1, then 2) the detectors run as processes (``retrain detector``, state snapshots on), on a
fresh set of topics; once the group is stable with every instance assigned, this process writes the same records
(with confluent-kafka's producer, which is not under test; predictions and labels interleaved in chunks of 500
per model). The time is from the first LabeledExample written to the last (their record timestamps on
``labeled-examples``); completion is read from the instances' ``retrain_joins_total`` on their /metrics. CPU time
of each process over the run (from writing the first record to the last join) comes from /proc. Usage:

    .venv/bin/python -m bench.detector_scaleout [--examples 50000] [--models 12] [--clients kafka-python,...]

Without --bootstrap it starts the project's broker on 127.0.0.1:19594 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.kafka import GroupWatch, balanced_model_ids, benchmark_kafka, broker_pid, fresh_topics, partition_of
from bench.services import ServiceProcess, cores_of, cpu_seconds, settings_env, wait_until
from retrain.kafka import TopicPartition, make_consumer, make_producer, read_at
from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import encode
from retrain.settings import DetectorSettings, KafkaSettings, RegistrySettings, Settings, TopicSettings

PORT = 19594
KEY = "a benchmark key that signs the detector's snapshots"
CHUNK = 500  # per model: its predictions of a chunk, then their labels


@dataclass(frozen=True)
class Records:
    """Encoded (key, value) pairs, in the order they are written, for each stream."""

    predictions: list[tuple[bytes, bytes]]
    labels: list[tuple[bytes, bytes]]


def make_records(n: int, models: list[str]) -> Records:
    per_model = n // len(models)
    tree = sea_model()
    streams = [sea_stream(tree, n=per_model, drift_at=None, model_id=m, seed=40 + i) for i, m in enumerate(models)]
    predictions, labels = [], []
    for start in range(0, per_model, CHUNK):
        for model_id, stream in zip(models, streams, strict=True):
            for item in stream[start : start + CHUNK]:
                predictions.append((model_id.encode(), encode(item.prediction)))
                labels.append((model_id.encode(), encode(item.label)))
    return Records(predictions, labels)


def write(kafka: KafkaSettings, topics: TopicSettings, records: Records) -> None:
    producer = make_producer(kafka.model_copy(update={"client": "confluent-kafka"}), linger_ms=20)
    chunk = CHUNK * 4  # alternate the topics every few chunks, so joins start at once
    for start in range(0, len(records.predictions), chunk):
        for key, value in records.predictions[start : start + chunk]:
            producer.send(topics.predictions, key, value)
        for key, value in records.labels[start : start + chunk]:
            producer.send(topics.labels, key, value)
    producer.flush()
    producer.close()


def written_window_s(kafka: KafkaSettings, topics: TopicSettings) -> tuple[float, int]:
    """Seconds from the first LabeledExample written to the last (record timestamps), and how many there are."""
    consumer = make_consumer(kafka, None)
    try:
        partitions = sorted(consumer.partitions_for_topic(topics.labeled_examples))
        ends = consumer.end_offsets([TopicPartition(topics.labeled_examples, p) for p in partitions])
        firsts, lasts = [], []
        for (topic, partition), end in ends.items():
            if end > 0:
                firsts.append(read_at(consumer, topic, partition, 0).timestamp)
                lasts.append(read_at(consumer, topic, partition, end - 1).timestamp)
    finally:
        consumer.close()
    return (max(lasts) - min(firsts)) / 1000, sum(ends.values())


def run(kafka: KafkaSettings, records: Records, instances: int, workdir: Path, label: str) -> float:
    """Start ``instances`` detectors, write the records, wait for every join; print and return examples/s."""
    n = len(records.labels)
    topics = fresh_topics(kafka)
    group = f"detector-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=kafka,
        topics=topics,
        detector=DetectorSettings(group_id=group),
        registry=RegistrySettings(path=workdir / group, hmac_key=KEY),
    )
    env = settings_env(settings)
    detectors = [  # a state directory each, as on separate machines
        ServiceProcess(
            "detector", {**env, "RETRAIN_STATE_DIR": str(workdir / f"{group}-{i}-state")}, workdir / f"{group}-{i}.log"
        )
        for i in range(instances)
    ]
    watch = GroupWatch(kafka)

    def assigned() -> bool:
        members = watch.assigned(group)
        return len(members) == instances and all(members)

    def joined() -> float:
        return sum(d.value("retrain_joins_total", outcome="joined") for d in detectors)

    try:
        wait_until(assigned, f"{instances} detector(s) assigned in a stable group", 120, detectors)
        pids = {f"detector#{i + 1}": d.pid for i, d in enumerate(detectors)}
        pids |= {"broker": broker_pid(PORT) or 0, "this process (writer, scrapes)": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        write(kafka, topics, records)
        written = time.monotonic() - started
        wait_until(lambda: joined() >= n, f"{n} joins", 600, detectors, every_s=0.25)
        wall = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items() if pid}
        split = [int(d.value("retrain_joins_total", outcome="joined")) for d in detectors]
    finally:
        for detector in detectors:
            detector.stop()
        watch.close()
    window, examples = written_window_s(kafka, topics)
    rate = examples / window
    print(
        f"{label} {instances} detector(s): {rate:,.0f} labeled examples/s ({examples:,} examples in {window:.2f} s; "
        f"joins per instance {split}; records written in {written:.2f} s)"
    )
    used = ", ".join(f"{name} {seconds:.1f} s ({seconds / wall:.0%})" for name, seconds in cpu.items())
    print(f"{label}   CPU over the {wall:.1f} s run: {used}; together {sum(cpu.values()) / wall:.2f} cores")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000, help="labels (and as many predictions)")
    parser.add_argument("--models", type=int, default=12, help="a multiple of 6: that many per partition")
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    partitions = TopicSettings().stream_partitions
    models = balanced_model_ids(max(1, args.models // partitions), partitions, prefix="scale")
    records = make_records(args.examples, models)
    spread = Counter(partition_of(key, partitions) for key, _ in records.labels)
    print(
        f"records: {len(records.labels):,} predictions + {len(records.labels):,} labels of {len(models)} models; "
        f"labels per partition {[spread[p] for p in range(partitions)]}"
    )
    print(
        f"machine: {os.cpu_count()} cores; each process may run on {cores_of(os.getpid())} of them (no pinning): "
        f"the detectors share them with the broker and this process"
    )
    with benchmark_kafka(args.bootstrap, port=PORT) as kafka, tempfile.TemporaryDirectory() as workdir:
        for client in args.clients.split(","):
            settings = kafka.model_copy(update={"client": client})
            one = run(settings, records, 1, Path(workdir), f"[{client}]")
            two = run(settings, records, 2, Path(workdir), f"[{client}]")
            print(f"[{client}] ratio 2 detectors / 1 detector: {two / one:.2f}")


if __name__ == "__main__":
    main()
