"""Benchmark: the trainer's fit workers. Eight models drifting at once with 1 and 2 workers, and the consume loop's
poll gaps during one long fit.

1. ``--models`` models (8), each with ``--examples`` labeled examples (SEA, a drift halfway), get a drift event at
   the same moment; measured: from sending the events to the last model-updated event, with
   ``RETRAIN_TRAINER_FIT_WORKERS`` 1 and then 2 (same trainer, fresh topics each). The ratio is 1-worker / 2-workers.
2. One fit sized to about ``--long-fit-s`` seconds (a RandomForest whose tree count is calibrated on this machine
   in the same run) while labeled examples keep arriving: the longest gap between two polls of the trainer's
   consume loop, against the fit's own duration (the gap a fit on the consume thread would make).

    .venv/bin/python -m bench.trainer_pool [--models 8] [--examples 20000] [--long-fit-s 30] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from sklearn.ensemble import RandomForestClassifier

from bench.kafka import benchmark_kafka, fresh_topics, trainer_settings
from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_trainer
from retrain.decisions.training import FittedModel
from retrain.kafka import TopicPartition, make_consumer, make_producer, send_and_wait
from retrain.producers.streams import GeneratorSource
from retrain.schemas import LabeledExample, ModelUpdatedEvent, RetrainEvent, RetrainReason, TrainingWindow, encode
from retrain.settings import KafkaSettings, Settings, TopicSettings


def labeled(model_id: str, n: int, seed: int) -> list[LabeledExample]:
    examples = []
    for i, example in enumerate(GeneratorSource("sea", (0, 1), (n // 2,), n, seed=seed)):
        at = datetime.fromtimestamp(time.time() - n + i, UTC)  # within the buffer's age bound
        examples.append(
            LabeledExample(
                prediction_id=f"{model_id}-{seed}-{i}",
                model_id=model_id,
                model_version=1,
                features=example.features,
                prediction=example.target,
                label=example.target,
                prediction_timestamp=at,
                label_timestamp=at,
            )
        )
    return examples


def settings_for(kafka: KafkaSettings, topics: TopicSettings, workdir: Path, workers: int, trees: int) -> Settings:
    return trainer_settings(
        kafka,
        topics,
        workdir,
        estimator="sklearn.ensemble.RandomForestClassifier",
        estimator_params=json.dumps({"n_estimators": trees, "random_state": 0}),
        max_window=100_000,
        default_window=100_000,
        fit_workers=workers,
    )


class Trainer:
    """A trainer loop on a thread, its model-updates read, and every poll of its consumer timed."""

    def __init__(self, settings: Settings) -> None:
        self.loop = run_trainer(settings, registry=CollectorRegistry(), serve=False)
        self.polls: list[float] = []
        poll = self.loop.consumer.poll

        def timed_poll(*args, **kwargs):
            self.polls.append(time.monotonic())
            return poll(*args, **kwargs)

        self.loop.consumer.poll = timed_poll  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        topic = settings.topics.model_updates
        self.updates = make_consumer(settings.kafka, None)
        self.updates.assign([TopicPartition(topic, p) for p in sorted(self.updates.partitions_for_topic(topic))])
        self.thread.start()

    def buffered(self, model_id: str) -> int:
        return len(self.loop.service.buffers.get(model_id, ()))

    def await_updates(self, triggers: set[str], timeout_s: float = 1_800) -> dict[str, float]:
        """When (monotonic) each trigger's model-updated event was read."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while set(seen) != triggers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"updates for {sorted(triggers - set(seen))} never came")
            for record in self.updates.poll(0.1, 500):
                update = decode_record(record, ModelUpdatedEvent)
                if update.trigger_event_id in triggers:
                    assert update.outcome.value == "promoted", update
                    seen[update.trigger_event_id] = time.monotonic()
        return seen

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(60)
        self.updates.close()


def all_models_updated(kafka: KafkaSettings, workdir: Path, workers: int, models: int, n: int, trees: int) -> float:
    topics = fresh_topics(kafka)
    producer = make_producer(kafka, linger_ms=20, batch_bytes=1024 * 1024)
    ids = [f"model-{m}" for m in range(models)]
    for seed, model_id in enumerate(ids):
        for example in labeled(model_id, n, seed):
            producer.send(topics.labeled_examples, model_id.encode(), encode(example))
    producer.flush()
    trainer = Trainer(settings_for(kafka, topics, workdir, workers, trees))
    try:
        while any(trainer.buffered(m) < n for m in ids):
            time.sleep(0.2)
        events = [
            RetrainEvent(model_id=m, reason=RetrainReason.DRIFT, suggested_window=TrainingWindow(last_n=n)) for m in ids
        ]
        started = time.monotonic()
        for event in events:
            producer.send(topics.retrain_events, event.model_id.encode(), encode(event))
        producer.flush()
        seen = trainer.await_updates({e.event_id for e in events})
        return max(seen.values()) - started
    finally:
        trainer.stop()
        producer.close()


def trees_for(seconds: float, examples: list[LabeledExample]) -> int:
    """A RandomForest tree count whose fit on ``examples`` (one thread) takes about ``seconds`` here."""
    names = sorted(examples[0].features)
    model = FittedModel(RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1), names, "classification")
    started = time.perf_counter()
    model.estimator.fit(model.matrix([e.features for e in examples]), [e.label for e in examples])
    per_tree = (time.perf_counter() - started) / 20
    return max(20, round(seconds / per_tree))


def poll_gaps(kafka: KafkaSettings, workdir: Path, n: int, fit_s: float) -> tuple[float, float, float, int]:
    """(longest poll gap, the fit's duration, the 99th-percentile gap, polls) during one long fit."""
    examples = labeled("long", n, 99)
    trees = trees_for(fit_s, examples[: int(n * 0.8)])  # the window less its holdout
    topics = fresh_topics(kafka)
    producer = make_producer(kafka, linger_ms=5)
    for example in examples:
        producer.send(topics.labeled_examples, b"long", encode(example))
    producer.flush()
    trainer = Trainer(settings_for(kafka, topics, workdir, 1, trees))
    flowing = threading.Event()

    def keep_labels_flowing() -> None:  # about 500 labeled examples a second for another model
        for i, example in enumerate(labeled("busy", 60_000, 7), start=1):
            if flowing.is_set():
                return
            producer.send(topics.labeled_examples, b"busy", encode(example))
            if i % 50 == 0:
                time.sleep(0.1)

    try:
        while trainer.buffered("long") < n:
            time.sleep(0.2)
        feeder = threading.Thread(target=keep_labels_flowing, daemon=True)
        feeder.start()
        window = TrainingWindow(last_n=n)
        event = RetrainEvent(model_id="long", reason=RetrainReason.DRIFT, suggested_window=window)
        send_and_wait(producer, topics.retrain_events, b"long", encode(event))
        trainer.polls.clear()
        started = time.monotonic()
        trainer.await_updates({event.event_id})
        ended = time.monotonic()
        flowing.set()
        feeder.join(30)
        polls = [at for at in trainer.polls if started <= at <= ended]
        gaps = sorted(b - a for a, b in itertools.pairwise(polls))
        fit = trainer.loop.service.metrics.fit_seconds.labels("long")._sum.get()
        return gaps[-1], fit, gaps[int(0.99 * (len(gaps) - 1))], len(polls)
    finally:
        trainer.stop()
        producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=50, help="RandomForest trees of the eight models' fits")
    parser.add_argument("--long-fit-s", type=float, default=30.0)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    with benchmark_kafka(args.bootstrap, port=19592) as kafka, tempfile.TemporaryDirectory() as workdir:
        took = {
            workers: all_models_updated(kafka, Path(workdir), workers, args.models, args.examples, args.trees)
            for workers in (1, 2)
        }
        print(
            f"{args.models} models drifting at once ({args.examples:,} examples each, RandomForest {args.trees} "
            f"trees): all updated after {took[1]:.1f} s with 1 fit worker, {took[2]:.1f} s with 2; "
            f"ratio {took[1] / took[2]:.2f}"
        )
        gap, fit, p99, polls = poll_gaps(kafka, Path(workdir), args.examples, args.long_fit_s)
        print(
            f"one {fit:.1f} s fit: longest poll gap {gap:.3f} s, 99th percentile {p99:.3f} s over {polls} polls; "
            f"gap / fit {gap / fit:.3f} (a fit on the consume thread: 1.0)"
        )


if __name__ == "__main__":
    main()
