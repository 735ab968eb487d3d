"""A flood of random model ids against a real broker: each service keeps at most its cap of models.

Known models go first (and are waited for), then 5,000 random ids, then the known models again. Every record of
a refused id goes to ``dead-letters`` with reason ``unknown_model`` and is counted; the known models' records are
handled exactly as without the flood; the per-model state and the per-model series number exactly the cap.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_detector, run_scorer, run_trainer
from retrain.registry import ModelRegistry
from retrain.schemas import DeadLetter, LabeledExample, LabelEvent, PredictionEvent, ScoringRequest, decode, encode
from retrain.settings import (
    BrokerSettings,
    DetectorSettings,
    KafkaSettings,
    ModelSettings,
    RegistrySettings,
    ScorerSettings,
    Settings,
    TopicSettings,
    TrainerSettings,
)
from tests.helpers.kafka_io import make_producer, read_all
from tests.helpers.registry import KEY as KEY
from tests.helpers.registry import promote
from tests.helpers.registry import sea_tree as sea_model
from tests.helpers.running import RunningService

START = datetime(2026, 11, 28, tzinfo=UTC)  # event times in the past: the detector refuses future ones
FLOOD = 5_000
KNOWN = ["fraud", "churn", "ltv"]


def flood_ids(n: int = FLOOD, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids[f"x{rng.getrandbits(64):016x}"] = None
    return list(ids)


def series_models(service: RunningService) -> set[str]:
    return {
        sample.labels["model_id"]
        for family in service.registry.collect()
        for sample in family.samples
        if "model_id" in sample.labels
    }


def letters(kafka_settings: KafkaSettings, topics: TopicSettings) -> list[DeadLetter]:
    return [decode_record(r, DeadLetter) for r in read_all(kafka_settings, topics.dead_letters, 1)]


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[KafkaProducer]:
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    yield producer
    producer.close()


def pair(model_id: str, n: int, rng: random.Random) -> tuple[PredictionEvent, LabelEvent]:
    at = START + timedelta(milliseconds=10 * n)
    x = rng.random()
    prediction = PredictionEvent(
        prediction_id=f"{model_id}-{n}",
        model_id=model_id,
        model_version=0,
        features={"x": x},
        prediction=int(x > 0.5),
        timestamp=at,
    )
    label = LabelEvent(
        prediction_id=prediction.prediction_id, model_id=model_id, label=int(rng.random() > 0.2), timestamp=at
    )
    return prediction, label


def send_pairs(producer: KafkaProducer, topics: TopicSettings, pairs: list[tuple[PredictionEvent, LabelEvent]]) -> None:
    for prediction, label in pairs:
        producer.send(topics.predictions, key=prediction.model_id.encode(), value=encode(prediction))
        producer.send(topics.labels, key=label.model_id.encode(), value=encode(label))
    producer.flush(timeout=60)


def test_the_detector_keeps_its_cap_of_models_through_a_flood_and_the_known_models_join_as_before(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, producer: KafkaProducer
):
    cap = 50
    topics = created_topics
    settings = Settings(
        kafka=kafka_settings,
        topics=topics,
        broker=BrokerSettings(),
        detector=DetectorSettings(group_id=f"detector-{unique}", label_ttl_s=86_400, prediction_ttl_s=86_400),
        models=ModelSettings(max_per_service=cap),
    )
    rng = random.Random(3)
    first = [pair(m, n, rng) for n in range(300) for m in KNOWN]
    flood = flood_ids()
    flooded = [pair(m, 1_000 + n, rng) for n, m in enumerate(flood)]
    second = [pair(m, 10_000 + n, rng) for n in range(300) for m in KNOWN]
    refused_records = 2 * (FLOOD - (cap - len(KNOWN)))  # both sides of each refused id: 9,906

    detector = RunningService(run_detector, settings)
    try:
        detector.wait_assigned(timeout_s=60)
        send_pairs(producer, topics, first)
        detector.wait_for("retrain_joins_total", 900, timeout_s=120, outcome="joined")
        send_pairs(producer, topics, flooded + second)
        detector.wait_for(
            "retrain_dead_letters_total", refused_records, timeout_s=180, service="detector", reason="unknown_model"
        )
        detector.wait_for("retrain_joins_total", 1_800 + cap - len(KNOWN), timeout_s=120, outcome="joined")
        consumed = {
            topic: detector.value("retrain_records_consumed_total", service="detector", topic=topic)
            for topic in (topics.predictions, topics.labels)
        }
        assert consumed == {topics.predictions: 6_800, topics.labels: 6_800}
        service = detector.service
        # Exactly the cap: the three known models and the first 47 flooded ids to arrive, nothing more.
        assert len(service.watches) == cap and set(KNOWN) <= set(service.watches)
        assert service.admission.admission.admitted == set(service.watches)
        assert detector.value("retrain_models_admitted", service="detector") == cap
        assert series_models(detector) == set(service.watches)
        assert [service.watches[m].position for m in KNOWN] == [600, 600, 600]
        admitted_flood = set(service.watches) - set(KNOWN)
        assert detector.value("retrain_joins_total", outcome="joined") == 1_800 + cap - len(KNOWN)
        assert (
            detector.value("retrain_dead_letters_total", service="detector", reason="unknown_model") == refused_records
        )
        # The gauge is set at the end of each batch: the one that made the last join may still be running.
        detector.wait_until(
            lambda: (
                detector.value("retrain_join_pending", side="prediction") == 0
                and detector.value("retrain_join_pending", side="label") == 0
            ),
            "nothing pending",
        )
    finally:
        detector.stop()

    dead = letters(kafka_settings, topics)
    assert len(dead) == refused_records and {d.error_reason for d in dead} == {"unknown_model"}
    assert {d.service for d in dead} == {"detector"}
    refused_ids = Counter(
        decode(d.payload(), PredictionEvent if d.source_topic == topics.predictions else LabelEvent).model_id
        for d in dead
    )
    assert set(refused_ids) == set(flood) - admitted_flood and set(refused_ids.values()) == {2}
    assert Counter(d.source_topic for d in dead) == {
        topics.predictions: refused_records // 2,
        topics.labels: refused_records // 2,
    }

    examples = [
        decode_record(r, LabeledExample)
        for r in read_all(kafka_settings, topics.labeled_examples, topics.stream_partitions)
    ]
    known = {e.prediction_id: e for e in examples if e.model_id in KNOWN}
    assert len(known) == 1_800 and len(examples) == 1_800 + cap - len(KNOWN)
    for prediction, label in first + second:  # every known pair joined, as sent
        example = known[prediction.prediction_id]
        assert (example.features, example.prediction, example.label) == (
            prediction.features,
            prediction.prediction,
            label.label,
        )
    assert {e.model_id for e in examples} - set(KNOWN) == admitted_flood


def requests(model_ids: list[str], first: int, rng: random.Random) -> list[ScoringRequest]:
    return [
        ScoringRequest(
            prediction_id=f"{model_id}-{first + n}",
            model_id=model_id,
            features={name: rng.uniform(0, 10) for name in ("0", "1", "2")},
            timestamp=START + timedelta(milliseconds=first + n),
        )
        for n, model_id in enumerate(model_ids)
    ]


def send_requests(producer: KafkaProducer, topics: TopicSettings, batch: list[ScoringRequest]) -> None:
    for request in batch:
        producer.send(topics.scoring_requests, key=request.model_id.encode(), value=encode(request))
    producer.flush(timeout=60)


def test_the_scorer_keeps_its_cap_of_models_and_at_most_two_loaded_through_a_flood(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, producer: KafkaProducer, tmp_path: Path
):
    cap, max_loaded = 20, 2
    topics = created_topics
    settings = Settings(
        kafka=kafka_settings,
        topics=topics,
        registry=RegistrySettings(path=tmp_path / "models", hmac_key=KEY),
        scorer=ScorerSettings(group_id=f"scorer-{unique}", max_loaded_models=max_loaded),
        models=ModelSettings(max_per_service=cap),
    )
    registry = ModelRegistry.from_settings(settings.registry)
    models = {m: sea_model(depth) for m, depth in zip(KNOWN, (2, 3, 4), strict=True)}
    for model_id, model in models.items():
        promote(registry, model_id, model)
    rng = random.Random(4)
    first = requests(KNOWN * 100, 0, rng)
    flood = flood_ids(seed=16)
    second = requests(KNOWN * 100, 100_000, rng)
    admitted_flood = cap - len(KNOWN)

    scorer = RunningService(run_scorer, settings)
    try:
        scorer.wait_assigned(timeout_s=60)
        send_requests(producer, topics, first)
        scorer.wait_until(
            lambda: sum(scorer.value("retrain_predictions_total", model_id=m) for m in KNOWN) >= 300, "300 predictions"
        )
        send_requests(producer, topics, requests(flood, 1_000, rng) + second)
        scorer.wait_for(
            "retrain_dead_letters_total",
            FLOOD - admitted_flood,
            timeout_s=180,
            service="scorer",
            reason="unknown_model",
        )
        scorer.wait_until(
            lambda: sum(scorer.value("retrain_predictions_total", model_id=m) for m in KNOWN) >= 600, "600 predictions"
        )
        assert scorer.value("retrain_records_consumed_total", service="scorer", topic=topics.scoring_requests) == 5_600
        service = scorer.service
        assert service.admission.admission.admitted >= set(KNOWN) and len(service.admission) == cap
        assert scorer.value("retrain_models_admitted", service="scorer") == cap
        assert series_models(scorer) == service.admission.admission.admitted
        # Loaded: at most two of the three known models (the flood's ids have no version: the fallback answers).
        assert len(service._loaded) == max_loaded and scorer.value("retrain_scorer_loaded_models") == max_loaded
        assert set(service._loaded) < set(KNOWN) and len(service.served) == cap - 1  # one known model unloaded
        assert scorer.value("retrain_model_unloads_total") >= 1
        for model_id in KNOWN:
            assert scorer.value("retrain_model_load_failures_total", model_id=model_id) == 0
            assert scorer.value("retrain_predictions_total", model_id=model_id) == 200
        assert (
            scorer.value("retrain_dead_letters_total", service="scorer", reason="unknown_model")
            == FLOOD - admitted_flood
        )
    finally:
        scorer.stop()

    dead = letters(kafka_settings, topics)
    assert len(dead) == FLOOD - admitted_flood and {d.error_reason for d in dead} == {"unknown_model"}
    refused = {decode(d.payload(), ScoringRequest).model_id for d in dead}
    scored = [
        decode_record(r, PredictionEvent)
        for r in read_all(kafka_settings, topics.predictions, topics.stream_partitions)
    ]
    flood_scored = {p.model_id for p in scored if p.model_id not in KNOWN}
    assert len(flood_scored) == admitted_flood and refused == set(flood) - flood_scored
    assert {(p.model_version, p.prediction) for p in scored if p.model_id not in KNOWN} == {(0, 0)}  # the fallback
    by_id = {r.prediction_id: r for r in first + second}
    known = [p for p in scored if p.model_id in KNOWN]
    assert len(known) == 600 and {p.model_version for p in known} == {1}
    for model_id, model in models.items():  # every known request scored by its own version 1, as without a flood
        mine = [p for p in known if p.model_id == model_id]
        assert [p.prediction for p in mine] == model.predict([by_id[p.prediction_id].features for p in mine])


def test_the_trainer_buffers_its_cap_of_models_through_a_flood(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, producer: KafkaProducer, tmp_path: Path
):
    cap = 10
    topics = created_topics
    settings = Settings(
        kafka=kafka_settings,
        topics=topics,
        trainer=TrainerSettings(group_id=f"trainer-{unique}"),
        registry=RegistrySettings(path=tmp_path / "models", hmac_key=KEY),
        models=ModelSettings(max_per_service=cap),
    )
    rng = random.Random(5)

    def example(model_id: str, n: int) -> LabeledExample:
        prediction, label = pair(model_id, n, rng)
        return LabeledExample(
            **prediction.model_dump(exclude={"schema_version", "timestamp"}),
            label=label.label,
            prediction_timestamp=prediction.timestamp,
            label_timestamp=label.timestamp,
        )

    def send(examples: list[LabeledExample]) -> None:
        for e in examples:
            producer.send(topics.labeled_examples, key=e.model_id.encode(), value=encode(e))
        producer.flush(timeout=60)

    flood = flood_ids(seed=17)
    trainer = RunningService(run_trainer, settings)
    try:
        trainer.wait_assigned(timeout_s=60)
        send([example(m, n) for n in range(200) for m in KNOWN[:2]])
        trainer.wait_until(
            lambda: {m: len(trainer.service.buffers.get(m, ())) for m in KNOWN[:2]} == {"fraud": 200, "churn": 200},
            "400 buffered",
        )
        send(
            [example(m, 1_000 + n) for n, m in enumerate(flood)]
            + [example(m, 10_000 + n) for n in range(100) for m in KNOWN[:2]]
        )
        refused = FLOOD - (cap - 2)
        trainer.wait_for(
            "retrain_dead_letters_total", refused, timeout_s=180, service="trainer", reason="unknown_model"
        )
        trainer.wait_for(
            "retrain_records_consumed_total", 5_600, timeout_s=60, service="trainer", topic=topics.labeled_examples
        )
        service = trainer.service
        assert len(service.buffers) == cap and len(service.buffers["fraud"]) == len(service.buffers["churn"]) == 300
        assert sorted(len(service.buffers[m]) for m in service.buffers if m not in KNOWN) == [1] * (cap - 2)
        assert trainer.value("retrain_models_admitted", service="trainer") == cap
        buffered = set(service.buffers)  # cleared when the partitions are revoked at the stop
        assert series_models(trainer) == buffered
        assert trainer.value("retrain_dead_letters_total", service="trainer", reason="unknown_model") == refused
    finally:
        trainer.stop()

    dead = letters(kafka_settings, topics)
    assert len(dead) == refused and {d.error_reason for d in dead} == {"unknown_model"}
    assert {decode(d.payload(), LabeledExample).model_id for d in dead} == set(flood) - buffered
