"""Benchmark: retrain latency through the trainer next to a plain scikit-learn fit on the same window.

For each window size the trainer first answers a cold-start event (so the measured retrain has a champion to
validate against), then a drift event asking for the whole window. Retrain latency is measured from sending the
retrain event to receiving its ModelUpdatedEvent on `model-updates` (so it includes two Kafka hops on top of
"consumed -> produced"). The baseline is `RandomForestClassifier(**same params).fit(X, y)` on the same window's
examples, timed in this process in the same run.

    .venv/bin/python -m bench.trainer_latency [--sizes 10000,100000] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from sklearn.ensemble import RandomForestClassifier

from bench.kafka import benchmark_kafka, fresh_topics, trainer_settings
from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_trainer
from retrain.decisions.training import FittedModel
from retrain.kafka import TopicPartition, make_consumer, make_producer, send_and_wait
from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import LabeledExample, ModelUpdatedEvent, RetrainEvent, RetrainReason, TrainingWindow, encode
from retrain.settings import KafkaSettings

PARAMS = {"n_estimators": 100, "random_state": 0}


def labeled(n: int) -> list[LabeledExample]:
    return [s.joined() for s in sea_stream(sea_model(), n=n, drift_at=n // 2, model_id="bench", seed=21)]


def plain_fit_seconds(examples: list[LabeledExample]) -> float:
    names = sorted(examples[0].features)
    rows = [e.features for e in examples]
    started = time.perf_counter()
    model = FittedModel(RandomForestClassifier(**PARAMS), names, "classification")  # same matrix building
    model.estimator.fit(model.matrix(rows), [e.label for e in examples])
    return time.perf_counter() - started


def measure(kafka: KafkaSettings, n: int, workdir: Path) -> tuple[float, float]:
    topics = fresh_topics(kafka)
    settings = trainer_settings(
        kafka,
        topics,
        workdir,
        estimator="sklearn.ensemble.RandomForestClassifier",
        estimator_params=json.dumps(PARAMS),
        max_window=n,
        buffer_max_examples=n,
        cold_start_min=1_000,
    )
    examples = labeled(n)
    producer = make_producer(kafka, linger_ms=20, batch_bytes=1024 * 1024)
    for example in examples:
        producer.send(topics.labeled_examples, b"bench", encode(example))
    producer.flush()

    loop = run_trainer(settings, registry=CollectorRegistry(), serve=False)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    updates = make_consumer(kafka, None)
    updates.assign(
        [TopicPartition(topics.model_updates, p) for p in sorted(updates.partitions_for_topic(topics.model_updates))]
    )
    try:
        while len(loop.service.buffers.get("bench", [])) < n:
            time.sleep(0.2)
        cold = RetrainEvent(
            model_id="bench", reason=RetrainReason.DATA_VOLUME, suggested_window=TrainingWindow(last_n=2_000)
        )
        send_and_wait(producer, topics.retrain_events, b"bench", encode(cold))
        wait_for_update(updates, cold.event_id)
        drift = RetrainEvent(model_id="bench", reason=RetrainReason.DRIFT, suggested_window=TrainingWindow(last_n=n))
        started = time.perf_counter()
        send_and_wait(producer, topics.retrain_events, b"bench", encode(drift))
        update = wait_for_update(updates, drift.event_id)
        latency = time.perf_counter() - started
        assert update.n_samples == n, update
    finally:
        loop.stop()
        thread.join(60)
        updates.close()
        producer.close()
    return latency, plain_fit_seconds(examples)


def wait_for_update(consumer, trigger: str) -> ModelUpdatedEvent:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for record in consumer.poll(0.2, 500):
            update = decode_record(record, ModelUpdatedEvent)
            if update.trigger_event_id == trigger:
                return update
    raise TimeoutError(f"no model update for {trigger}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    with benchmark_kafka(args.bootstrap, port=19492) as kafka, tempfile.TemporaryDirectory() as workdir:
        for n in (int(size) for size in args.sizes.split(",")):
            latency, plain = measure(kafka, n, Path(workdir))
            print(
                f"window {n:>7}: retrain event -> model update {latency:6.2f} s; plain RandomForest fit "
                f"{plain:6.2f} s; ratio {latency / plain:.2f}"
            )


if __name__ == "__main__":
    main()
