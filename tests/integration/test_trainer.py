"""The trainer against a real broker: cold start, a drift retrain that pays off, idempotency, rebuilt buffers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_trainer
from retrain.registry import ModelRegistry
from retrain.schemas import LabeledExample, ModelUpdatedEvent, RetrainEvent, RetrainReason, TrainingWindow, encode
from retrain.settings import BrokerSettings, KafkaSettings, RegistrySettings, Settings, TopicSettings, TrainerSettings
from tests.helpers.kafka_io import make_producer, read_all
from tests.helpers.running import RunningService
from tests.helpers.streams import labeled

KEY = "k" * 40


@pytest.fixture
def settings(kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka=kafka_settings,
        topics=created_topics,
        broker=BrokerSettings(),
        trainer=TrainerSettings(
            group_id=f"trainer-{unique}",
            cold_start_min=2_000,
            estimator="sklearn.ensemble.RandomForestClassifier",
            estimator_params='{"n_estimators": 30, "random_state": 0}',
        ),
        registry=RegistrySettings(path=tmp_path / "models", hmac_key=KEY),
    )


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[KafkaProducer]:
    producer = make_producer(kafka_settings, linger_ms=20)
    yield producer
    producer.close()


def send(producer: KafkaProducer, topics: TopicSettings, *events) -> None:
    for event in events:
        topic = topics.labeled_examples if isinstance(event, LabeledExample) else topics.retrain_events
        producer.send(topic, key=event.model_id.encode(), value=encode(event))
    producer.flush()


def updates(kafka_settings: KafkaSettings, topics: TopicSettings) -> list[ModelUpdatedEvent]:
    return [decode_record(r, ModelUpdatedEvent) for r in read_all(kafka_settings, topics.model_updates, 1)]


def test_cold_start_then_a_drift_retrain_that_scores_better(settings: Settings, producer, kafka_settings):
    topics = settings.topics
    before = labeled("sea", 3_000, variant_after=None, seed=11)
    cold = RetrainEvent(model_id="sea", reason=RetrainReason.DATA_VOLUME, detector="cold_start", model_version=0)
    send(producer, topics, *before)
    send(producer, topics, cold)

    trainer = RunningService(run_trainer, settings)
    try:
        trainer.wait_for("retrain_model_updates_total", 1, model_id="sea", outcome="promoted")
        after = labeled("sea", 3_000, variant_after=0, seed=12, start=1)  # variant 3 from the first example
        drift = RetrainEvent(
            model_id="sea",
            reason=RetrainReason.DRIFT,
            detector="ADWIN",
            model_version=1,
            suggested_window=TrainingWindow(last_n=2_500),
        )
        send(producer, topics, *after)  # written before the event, as the detector does
        send(producer, topics, drift)
        trainer.wait_for("retrain_model_updates_total", 2, model_id="sea", outcome="promoted")
    finally:
        trainer.stop()

    first, second = updates(kafka_settings, topics)
    assert (first.version, first.promoted, first.trigger_event_id) == (1, True, cold.event_id)
    assert (second.version, second.previous_version, second.promoted) == (2, 1, True)
    assert second.trigger_event_id == drift.event_id and second.n_samples == 2_500

    registry = ModelRegistry(settings.registry.path, KEY)
    assert registry.champion("sea").version == 2
    v1, v2 = registry.load("sea", 1), registry.load("sea", 2)
    fresh = labeled("sea", 2_000, variant_after=0, seed=13, start=2)  # unseen post-drift data
    assert v2.score(fresh) > v1.score(fresh) + 0.03, (v2.score(fresh), v1.score(fresh))
    assert registry.info("sea", 2).sha256 == second.sha256


def test_a_retrain_event_delivered_twice_yields_one_version(settings: Settings, producer, kafka_settings):
    topics = settings.topics
    event = RetrainEvent(model_id="twice", reason=RetrainReason.MANUAL, suggested_window=TrainingWindow(last_n=1_000))
    send(producer, topics, *labeled("twice", 1_500, variant_after=None, seed=3), event)

    trainer = RunningService(run_trainer, settings)
    try:
        trainer.wait_for("retrain_model_updates_total", 1, model_id="twice", outcome="promoted")
        send(producer, topics, event)  # the same event again (a redelivery)
        trainer.wait_for("retrain_model_updates_total", 2, model_id="twice", outcome="promoted")
    finally:
        trainer.stop()

    answers = updates(kafka_settings, topics)
    assert [(a.version, a.event_id) for a in answers] == [(1, f"{event.event_id}-outcome")] * 2
    assert [info.version for info in ModelRegistry(settings.registry.path, KEY).versions("twice")] == [1]


def test_after_a_restart_the_buffer_holds_the_same_examples(settings: Settings, producer, kafka_settings):
    topics = settings.topics
    send(producer, topics, *labeled("restart", 2_500, variant_after=None, seed=4))

    def buffered(service) -> list[str]:
        buffer = service.buffers.get("restart")
        return [e.prediction_id for e in buffer.examples()] if buffer else []

    first = RunningService(run_trainer, settings)
    try:
        first.wait_until(lambda: len(buffered(first.service)) == 2_500, "2,500 buffered examples")
        before = buffered(first.service)
    finally:
        first.stop()

    second = RunningService(run_trainer, settings)
    try:
        second.wait_until(lambda: len(buffered(second.service)) == 2_500, "the rebuilt buffer")
        after = buffered(second.service)
    finally:
        second.stop()
    assert after == before


def test_models_command_promotes_and_rolls_back_with_an_update_event(settings: Settings, kafka_settings, tmp_path):
    import os
    import subprocess
    import sys

    from sklearn.tree import DecisionTreeClassifier

    from retrain.decisions.training import FittedModel
    from tests.conftest import REPO_ROOT

    registry = ModelRegistry(settings.registry.path, KEY)
    window = {"n_samples": 10, "first_label_timestamp": None, "last_label_timestamp": None}
    for depth in (1, 2):
        model = FittedModel(
            DecisionTreeClassifier(max_depth=depth).fit([[0.0], [1.0]], [0, 1]), ["x"], "classification"
        )
        registry.register(
            "cli",
            model,
            n_samples=10,
            metrics={"accuracy": 0.5 + depth / 10},
            training_window=window,
            trigger_event_id=None,
        )
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        "RETRAIN_TOPIC_MODEL_UPDATES": settings.topics.model_updates,
        "RETRAIN_REGISTRY_PATH": str(settings.registry.path),
        "RETRAIN_REGISTRY_HMAC_KEY": KEY,
    }

    def retrain(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "retrain.cli", "models", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert KEY not in result.stdout + result.stderr
        return result.stdout

    assert "versions    2  in service -" in retrain("list")
    assert "version 1 in service (promoted)" in retrain("promote", "cli", "1")
    assert "version 2 in service (promoted)" in retrain("promote", "cli", "2")
    assert "version 1 in service (rolled_back)" in retrain("rollback", "cli")
    assert "* v1" in retrain("show", "cli")

    published = updates(kafka_settings, settings.topics)
    assert [(u.version, u.outcome.value, u.previous_version) for u in published] == [
        (1, "promoted", None),
        (2, "promoted", 1),
        (1, "rolled_back", 2),
    ]
    assert all(u.sha256 == registry.info("cli", u.version).sha256 for u in published)
