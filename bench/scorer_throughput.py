"""Benchmark: requests scored per second by the scorer versus the raw client, for each Kafka client.

All read the same records (N ScoringRequests with SEA features, keyed by ``--models`` model ids, each with a
promoted DecisionTree version in a registry of its own in a temporary directory) from the same broker in one run.
The raw consumer is the client library alone: it only polls and touches each value. The scorer decodes each
request, scores each poll batch with one ``predict`` per model, writes every PredictionEvent and flushes before
committing; it is driven in this process (``run_scorer(serve=False)``, ``run_once`` until
``retrain_predictions_total`` reaches N). Raw kafka-python is the baseline the ratios are taken against. Usage:

    .venv/bin/python -m bench.scorer_throughput [--requests 50000] [--models 1] [--clients kafka-python,confluent-kafka]

Without --bootstrap it starts the project's broker on 127.0.0.1:19592 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.kafka import benchmark_kafka, fresh_topics
from retrain.consumers.wiring import run_scorer
from retrain.decisions.training import FittedModel
from retrain.kafka import make_producer
from retrain.producers.scored import sea_model, sea_stream
from retrain.registry import ModelRegistry
from retrain.schemas import ScoringRequest, encode
from retrain.settings import BrokerSettings, KafkaSettings, RegistrySettings, ScorerSettings, Settings, TopicSettings

ADAPTERS = {"kafka-python": "retrain.kafka.kafka_python", "confluent-kafka": "retrain.kafka.confluent"}
KEY = "a benchmark key that signs the scorer's models"
WINDOW = {"n_samples": 5_000, "first_label_timestamp": None, "last_label_timestamp": None}


def model_ids(models: int) -> list[str]:
    return [f"bench{m}" for m in range(models)]


def promote_models(registry_settings: RegistrySettings, models: int) -> None:
    """One promoted version per model: the tests' SEA tree, on the features the requests carry."""
    registry = ModelRegistry.from_settings(registry_settings)
    fitted = FittedModel(sea_model(), ["x0", "x1", "x2"], "classification")
    for model_id in model_ids(models):
        info = registry.register(
            model_id, fitted, n_samples=5_000, metrics={}, training_window=WINDOW, trigger_event_id=None
        )
        registry.promote(model_id, info.version)


def produce(kafka: KafkaSettings, topics: TopicSettings, n: int, models: int) -> None:
    """``n`` requests, dealt round-robin over the models (each keyed by its model id, as the replayer does)."""
    ids = model_ids(models)
    producer = make_producer(kafka, linger_ms=20, batch_bytes=512 * 1024)
    for i, item in enumerate(sea_stream(sea_model(), n=n, drift_at=None, model_id="bench")):
        model_id = ids[i % models]
        request = ScoringRequest(
            prediction_id=f"{model_id}-{i}",
            model_id=model_id,
            features=item.prediction.features,
            timestamp=item.prediction.timestamp,
        )
        producer.send(topics.scoring_requests, model_id.encode(), encode(request))
    producer.flush()
    producer.close()


def scorer_seconds(
    kafka: KafkaSettings, topics: TopicSettings, registry: RegistrySettings, n: int
) -> tuple[float, float]:
    """Seconds from the first scored batch to N requests scored, and the seconds of those spent scoring batches."""
    settings = Settings(
        kafka=kafka,
        topics=topics,
        broker=BrokerSettings(),
        registry=registry,
        scorer=ScorerSettings(group_id=f"scorer-{uuid.uuid4().hex[:8]}"),
    )
    metrics = CollectorRegistry()
    loop = run_scorer(settings, registry=metrics, serve=False)
    loop.subscribe()

    def scored() -> float:
        return sum(
            sample.value
            for metric in metrics.collect()
            for sample in metric.samples
            if sample.name == "retrain_predictions_total"
        )

    def scoring_s() -> float:
        return metrics.get_sample_value("retrain_scoring_batch_seconds_sum") or 0.0

    started, scoring_before = None, 0.0
    while scored() < n:
        if loop.run_once() and started is None:
            started, scoring_before = time.perf_counter(), scoring_s()  # the first batch (and model load) excluded
    elapsed = time.perf_counter() - (started or time.perf_counter())  # run_once flushed the predictions
    scoring = scoring_s() - scoring_before
    loop.stop()
    loop._finish()
    return elapsed, scoring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--models", type=int, default=1, help="model ids the requests are spread over")
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    n = args.requests
    print(f"records: {n} scoring requests over {args.models} model(s)")
    with benchmark_kafka(args.bootstrap, port=19592) as kafka, tempfile.TemporaryDirectory() as workdir:
        registry = RegistrySettings(path=Path(workdir) / "models", hmac_key=KEY)
        promote_models(registry, args.models)
        topics = fresh_topics(kafka)
        produce(kafka, topics, n, args.models)
        streams = [topics.scoring_requests]
        baseline = importlib.import_module(ADAPTERS["kafka-python"]).raw_consume_seconds(kafka, streams, n)
        print(f"raw kafka-python consume (baseline): {n / baseline:,.0f} records/s ({baseline:.2f} s)")
        for client in args.clients.split(","):
            settings = kafka.model_copy(update={"client": client})
            raw = importlib.import_module(ADAPTERS[client]).raw_consume_seconds(settings, streams, n)
            scorer, scoring = scorer_seconds(settings, topics, registry, n)
            print(f"[{client}] raw consume: {n / raw:,.0f} records/s ({raw:.2f} s)")
            print(
                f"[{client}] scorer (decode, predict per batch, PredictionEvents written and flushed): "
                f"{n / scorer:,.0f} requests/s ({scorer:.2f} s); ratio to its raw consume {raw / scorer:.2f}; "
                f"to raw kafka-python {baseline / scorer:.2f}"
            )
            print(f"[{client}]   of which scoring the batches (predict, events built and sent): {scoring:.2f} s")


if __name__ == "__main__":
    main()
