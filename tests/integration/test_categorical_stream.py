"""Categorical, boolean and missing features through the real services on a real broker.

The scorer, detector and trainer processes with the trainer's default estimator and no user code: version 1 is
fitted on the first concept of the ``flights`` stream (carriers, airports, a weekend flag, missing distances), and
version 2, the cold start's refit, on 5,000 examples of it, unless it does not beat version 1 on the holdout. Then
the concept changes and brings carriers no version has seen, and they are scored. When version 2 went into service
just before the change, it errs from its first post-change prediction, so its errors show no rise for a detector to
find: its validation gap finds the change. When version 1 is still in service, its errors rise and a detector finds
it. Either way a version whose vocabulary holds the new carriers is trained and swapped in. Nothing a user would
call valid is dead-lettered.
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
from retrain.schemas import LabelEvent, ModelUpdatedEvent, PredictionEvent, RetrainEvent
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import make_producer, produce_requests, read_all
from tests.helpers.processes import HARNESS_KEY as KEY
from tests.helpers.processes import Detector, free_port, served, wait_for

DRIFT_AT, AFTER_CHANGE, CHUNK, AFTER_SWAP = 6_000, 6_000, 500, 300
N = DRIFT_AT + AFTER_CHANGE  # the new concept is sent a chunk at a time until a version fitted on it is served


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


def carriers(registry: ModelRegistry, model_id: str, version: int) -> set[str]:
    """The carrier vocabulary the version was fitted with."""
    model = registry.load(model_id, version)
    assert isinstance(model, FittedModel) and model.encoding is not None
    (column,) = [c for c in model.encoding.columns if c.name == "carrier"]
    assert column.kind == "category"
    return set(column.categories)


def new_concept_version(registry: ModelRegistry, model_id: str, scorer_port: int) -> int | None:
    """The champion, once the scorer serves it and it knows carriers version 1 did not; else None."""
    champion = registry.champion(model_id)
    if champion is None or champion.version < 2 or served(scorer_port, model_id) < champion.version:
        return None
    known = carriers(registry, model_id, champion.version) - carriers(registry, model_id, 1)
    return champion.version if known else None


def answers(kafka: KafkaSettings, topics: TopicSettings, model_id: str) -> int:
    """The trainer's answers (promoted or not) to the model's retrain events so far."""
    updates = [
        decode_record(r, ModelUpdatedEvent) for r in read_all(kafka, topics.model_updates, topics.control_partitions)
    ]
    return sum(u.model_id == model_id for u in updates)


def scored(kafka: KafkaSettings, topics: TopicSettings) -> int:
    return len(read_all(kafka, topics.predictions, topics.stream_partitions))


@pytest.mark.clients("kafka-python")
def test_a_categorical_stream_with_missing_values_is_served_retrained_and_swapped(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path
):
    topics = created_topics
    model_id = f"flights-{unique}"
    registry_path = tmp_path / "models"
    registry = ModelRegistry(registry_path, KEY)
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
        produce_requests(producer, topics, stream[3_000:DRIFT_AT])  # the cold start's refit at 5,000
        wait_for(
            lambda: answers(kafka_settings, topics, model_id) >= 2, "the answer to the cold start's refit", services
        )
        in_service = registry.champion(model_id).version  # 2, or 1 when the refit did not beat version 1
        wait_for(lambda: served(scorer_port, model_id) >= in_service, "the scorer to serve the champion", services)
        sent = DRIFT_AT  # the concept changes here
        while new_concept_version(registry, model_id, scorer_port) is None and sent < N:
            produce_requests(producer, topics, stream[sent : sent + CHUNK])
            sent += CHUNK
            wait_for(lambda: scored(kafka_settings, topics) >= sent, "every request to be scored", services)  # noqa: B023
        wait_for(
            lambda: new_concept_version(registry, model_id, scorer_port) is not None,
            "the scorer to serve a version fitted on the new concept",
            services,
        )
        retrained = served(scorer_port, model_id)  # that version, or a newer one the scorer swapped to since
        produce_requests(producer, topics, stream[sent : sent + AFTER_SWAP])  # scored by that version or a newer one
        wait_for(lambda: scored(kafka_settings, topics) >= sent + AFTER_SWAP, "every request to be scored", services)
        for service in services:
            assert service.terminate() == 0, service.outputs[-1][-3000:]
    finally:
        producer.close()
        for service in services:
            service.kill_if_running()

    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, topics.retrain_events, 1)]
    # The cold start at 1,000 and 5,000, then the change, found in the errors of the version in service.
    assert [(e.model_version, e.detector) for e in events][:2] == [(0, "cold_start"), (1, "cold_start")]
    if in_service == 2:  # went into service just before the change: its errors show no rise
        assert (events[2].model_version, events[2].detector) == (2, "validation_gap")
    else:  # version 1 served both concepts: its errors rose at the change
        assert events[2].model_version == 1 and events[2].detector in {"ADWIN", "PageHinkley", "rolling_accuracy"}
    vocabularies = {info.version: carriers(registry, model_id, info.version) for info in registry.versions(model_id)}
    new_carriers = vocabularies[registry.champion(model_id).version] - vocabularies[1]
    assert new_carriers, "the retrained version knows the carriers that came with the new concept"

    records = read_all(kafka_settings, topics.predictions, topics.stream_partitions)
    predictions = [decode_record(r, PredictionEvent) for r in records]
    assert sorted(int(p.prediction_id.rsplit("-", 1)[1]) for p in predictions) == list(range(sent + AFTER_SWAP))
    # Carriers outside the serving version's vocabulary were scored.
    assert any(p.model_version >= 1 and p.features["carrier"] not in vocabularies[p.model_version] for p in predictions)
    last = [p for p in predictions if int(p.prediction_id.rsplit("-", 1)[1]) >= sent]
    assert all(p.model_version >= retrained for p in last)  # sent once the retrained version was served
    assert any(p.features["carrier"] in new_carriers for p in last)
    assert any(p.features["distance"] is None and p.model_version >= 1 for p in predictions)
    assert read_all(kafka_settings, topics.dead_letters, topics.dead_letter_partitions) == []
