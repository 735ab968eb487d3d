"""Categorical, boolean and missing features through the real services on a real broker.

The scorer, detector and trainer processes with the trainer's default estimator and no user code: version 1 is
fitted on the first concept of the ``flights`` stream (carriers, airports, a weekend flag, missing distances); the
concept changes and brings carriers version 1 never saw; they are scored by version 1, a drift is detected, and
version 2, whose vocabulary holds the new carriers, is trained and swapped in. Nothing a user would call valid is
dead-lettered.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from retrain.consumers.decoding import decode_record
from retrain.decisions.training import FittedModel
from retrain.producers.scored import START, Scored
from retrain.producers.streams import GeneratorSource
from retrain.registry import ModelRegistry
from retrain.schemas import LabelEvent, PredictionEvent
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import make_producer, produce_requests, read_all
from tests.helpers.processes import HARNESS_KEY as KEY
from tests.helpers.processes import Detector, free_port, served, wait_for

N, DRIFT_AT, AFTER_SWAP = 12_000, 6_000, 300


def flights_stream(model_id: str) -> list[Scored]:
    source = GeneratorSource("flights", (0, 1), (DRIFT_AT,), N + AFTER_SWAP, seed=11, noise=0.05)
    out = []
    for i, example in enumerate(source):
        at = START + timedelta(seconds=i)
        prediction_id = f"{model_id}-{i}"
        prediction = PredictionEvent(
            prediction_id=prediction_id,
            model_id=model_id,
            model_version=0,
            features=example.features,
            prediction=0,
            timestamp=at,
        )
        label_at = at + timedelta(seconds=30)
        label = LabelEvent(prediction_id=prediction_id, model_id=model_id, label=example.target, timestamp=label_at)
        out.append(Scored(prediction, label))
    return out


def vocabulary(model: FittedModel, feature: str) -> set[str]:
    assert model.encoding is not None
    (column,) = [c for c in model.encoding.columns if c.name == feature]
    assert column.kind == "category"
    return set(column.categories)


@pytest.mark.clients("kafka-python")
def test_a_categorical_stream_with_missing_values_is_served_retrained_and_swapped(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path
):
    topics = created_topics
    model_id = f"flights-{unique}"
    registry_path = tmp_path / "models"
    env = {"RETRAIN_REGISTRY_PATH": str(registry_path)}
    scorer_port = free_port()
    services = [
        Detector(
            kafka_settings,
            topics,
            f"scorer-{unique}",
            "scorer",
            RETRAIN_SCORER_GROUP_ID=f"scorer-{unique}",
            RETRAIN_METRICS_SCORER_PORT=str(scorer_port),
            **env,
        ),
        Detector(kafka_settings, topics, f"detector-{unique}"),
        Detector(
            kafka_settings,
            topics,
            f"trainer-{unique}",
            "trainer",
            RETRAIN_TRAINER_GROUP_ID=f"trainer-{unique}",
            RETRAIN_METRICS_TRAINER_PORT=str(free_port()),
            **env,
        ),
    ]
    stream = flights_stream(model_id)
    assert any(v is None for s in stream for v in s.prediction.features.values())  # missing values are sent
    producer = make_producer(kafka_settings, linger_ms=20)
    try:
        for service in services:
            service.start()
        produce_requests(producer, topics, stream[:3_000])  # version 1 from these (cold start)
        wait_for(lambda: served(scorer_port, model_id) >= 1, "the scorer to serve version 1", services)
        produce_requests(producer, topics, stream[3_000:N])  # the concept changes at 6,000
        wait_for(lambda: served(scorer_port, model_id) >= 2, "the scorer to serve a retrained version", services)
        produce_requests(producer, topics, stream[N:])  # scored by the retrained version
        wait_for(
            lambda: len(read_all(kafka_settings, topics.predictions, topics.stream_partitions)) >= N + AFTER_SWAP,
            "every request to be scored",
            services,
        )
        for service in services:
            assert service.terminate() == 0, service.outputs[-1][-3000:]
    finally:
        producer.close()
        for service in services:
            service.kill_if_running()

    registry = ModelRegistry(registry_path, KEY)
    first, newest = registry.load(model_id, 1), registry.load(model_id, registry.champion(model_id).version)
    assert isinstance(first, FittedModel) and isinstance(newest, FittedModel)
    old_carriers = vocabulary(first, "carrier")
    new_carriers = vocabulary(newest, "carrier") - old_carriers
    assert new_carriers, "the retrained version knows the carriers that came with the new concept"

    records = read_all(kafka_settings, topics.predictions, topics.stream_partitions)
    predictions = [decode_record(r, PredictionEvent) for r in records]
    assert sorted(int(p.prediction_id.rsplit("-", 1)[1]) for p in predictions) == list(range(N + AFTER_SWAP))
    unseen_by_v1 = [p for p in predictions if p.model_version == 1 and p.features["carrier"] in new_carriers]
    assert unseen_by_v1, "version 1 scored carriers it never saw"
    last = [p for p in predictions if int(p.prediction_id.rsplit("-", 1)[1]) >= N]
    assert all(p.model_version >= 2 for p in last)  # sent once the retrained version was served
    assert any(p.features["carrier"] in new_carriers for p in last)
    assert any(p.features["distance"] is None and p.model_version >= 1 for p in predictions)
    assert read_all(kafka_settings, topics.dead_letters, topics.dead_letter_partitions) == []
