"""The trainer service's decisions without Kafka: failures as events, coalescing, the cold-start minimum."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.trainer import TrainerService
from retrain.decisions.training import TrainingConfig, estimator_factory
from retrain.kafka import Record, TopicPartition
from retrain.registry import ModelRegistry
from retrain.settings import TopicSettings
from schemas import LabeledExample, RetrainEvent, RetrainReason, TrainingWindow, UpdateOutcome, encode

START = datetime(2026, 11, 28, tzinfo=UTC)
TOPICS = TopicSettings()


class CollectingOutputs:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def record(topic: str, event, offset: int) -> Record:
    value = encode(event)
    return Record(topic, 0, offset, event.model_id.encode(), value, 0)


def examples(model_id: str, n: int, *, one_class: bool = False, seed: int = 0) -> list[LabeledExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = rng.random()
        out.append(
            LabeledExample(
                prediction_id=f"{model_id}-{i}",
                model_id=model_id,
                model_version=0,
                features={"x": x},
                prediction=0,
                label=0 if one_class else int(x > 0.5),
                prediction_timestamp=START + timedelta(seconds=i),
                label_timestamp=START + timedelta(seconds=i + 1),
            )
        )
    return out


@pytest.fixture
def service(tmp_path: Path) -> TrainerService:
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"random_state": 0})
    return TrainerService(
        TOPICS,
        ModelRegistry(tmp_path, "s" * 40),
        TrainingConfig(min_window=100, max_window=5_000, default_window=1_000, min_holdout=20, min_train=50),
        lambda model_id, task: tree,
        buffer_max_examples=10_000,
        buffer_max_age_s=10**9,
        cold_start_min=500,
    )


def feed(service: TrainerService, *events) -> CollectingOutputs:
    out = CollectingOutputs()
    for offset, event in enumerate(events):
        topic = TOPICS.labeled_examples if isinstance(event, LabeledExample) else TOPICS.retrain_events
        service.handle(record(topic, event, offset), out)
    service.after_batch(out)
    return out


def test_one_class_is_a_failed_outcome_and_no_version(service: TrainerService):
    event = RetrainEvent(model_id="flat", reason=RetrainReason.MANUAL, suggested_window=TrainingWindow(last_n=300))
    out = feed(service, *examples("flat", 600, one_class=True), event)
    [update] = out.events
    assert (update.outcome, update.promoted, update.version) == (UpdateOutcome.FAILED, False, None)
    assert update.detail.startswith("single_class:") and update.trigger_event_id == event.event_id
    assert service.registry.versions("flat") == []


def test_too_few_examples_is_a_failed_outcome(service: TrainerService):
    event = RetrainEvent(model_id="few", reason=RetrainReason.DRIFT)
    [update] = feed(service, *examples("few", 60), event).events
    assert update.outcome is UpdateOutcome.FAILED and update.detail.startswith("too_few_examples:")


def test_events_for_one_model_are_coalesced_into_one_retrain(service: TrainerService):
    first = RetrainEvent(model_id="busy", reason=RetrainReason.DRIFT)
    second = RetrainEvent(model_id="busy", reason=RetrainReason.PERFORMANCE)
    out = feed(service, *examples("busy", 1_200), first, second)
    [update] = out.events
    assert update.trigger_event_id == second.event_id and update.version == 1 and update.promoted
    assert [info.version for info in service.registry.versions("busy")] == [1]


def test_cold_start_waits_for_the_minimum_then_trains_version_1(service: TrainerService):
    cold = RetrainEvent(model_id="new", reason=RetrainReason.DATA_VOLUME, detector="cold_start")
    data = examples("new", 800)
    assert feed(service, *data[:300], cold).events == []  # 300 < cold_start_min (500): the event waits
    assert "new" in service.pending
    [update] = feed(service, *data[300:]).events
    assert (update.version, update.promoted, update.outcome) == (1, True, UpdateOutcome.PROMOTED)
    assert service.pending == {}


def test_a_worse_challenger_is_rejected_and_the_champion_stays(service: TrainerService):
    feed(service, *examples("steady", 1_200, seed=1), RetrainEvent(model_id="steady", reason=RetrainReason.MANUAL))
    # The window: 1,000 examples with random labels, then 300 clean ones. The holdout (the latest 260) is clean,
    # so the challenger, fitted mostly on noise, scores below the champion that was fitted on clean data.
    noisy = [
        e.model_copy(update={"label": random.Random(i).randint(0, 1), "prediction_id": f"n{i}"})
        for i, e in enumerate(examples("steady", 1_000, seed=2))
    ]
    clean_tail = examples("steady", 300, seed=3)
    clean_tail = [e.model_copy(update={"prediction_id": f"c{i}"}) for i, e in enumerate(clean_tail)]
    event = RetrainEvent(model_id="steady", reason=RetrainReason.DRIFT, suggested_window=TrainingWindow(last_n=1_300))
    [update] = feed(service, *noisy, *clean_tail, event).events
    assert update.outcome is UpdateOutcome.REJECTED and not update.promoted and update.version == 2
    assert update.metrics["champion_accuracy"] > update.metrics["accuracy"]
    assert service.registry.champion("steady").version == 1


class RewindingConsumer:
    """The calls the trainer's rewind makes; ``offsets_for_times`` answers ``young_from`` for every partition."""

    def __init__(self, assigned: set[TopicPartition], young_from: int | None = 0, end: int = 1_000) -> None:
        self.assigned = set(assigned)
        self.paused_now: set[TopicPartition] = set()
        self.calls: list[tuple] = []
        self.young_from = young_from  # offset of the first record young enough, None: none is
        self.end = end

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused_now.update(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self.paused_now.difference_update(partitions)
        self.calls.append(("resume", *sorted(partitions)))

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    def end_offsets(self, partitions):
        ends = {tp: self.end for tp in partitions}
        self.end += 1_000  # a producer keeps writing: every later look sees a further end
        return ends

    def offsets_for_times(self, timestamps):
        if self.young_from is None:
            return {tp: None for tp in timestamps}
        return {tp: self.young_from for tp in timestamps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", tp, offset))


LE0, LE1 = TopicPartition(TOPICS.labeled_examples, 0), TopicPartition(TOPICS.labeled_examples, 1)


def test_an_assignment_is_rewound_then_resumed(service: TrainerService):
    consumer = RewindingConsumer({LE0, LE1})
    service.consumer = consumer  # type: ignore[assignment]
    service.partitions_assigned(consumer, [LE0, LE1])  # type: ignore[arg-type]
    assert consumer.paused() == {LE0, LE1}
    service.after_batch(CollectingOutputs())
    assert sorted(consumer.calls[:2]) == [("seek", LE0, 0), ("seek", LE1, 0)]
    assert consumer.calls[2:] == [("resume", LE0, LE1)]
    assert consumer.paused() == set()


def test_a_paused_partition_that_is_not_awaited_is_rewound_all_the_same(service: TrainerService):
    # A rewind that Kafka failed under leaves its partition paused: it must not stay paused for good.
    consumer = RewindingConsumer({LE0, LE1})
    consumer.pause([LE1])
    service.consumer = consumer  # type: ignore[assignment]
    service.after_batch(CollectingOutputs())
    assert consumer.calls == [("seek", LE1, 0), ("resume", LE1)]
    assert consumer.paused() == set()


def test_with_nothing_young_enough_a_rewind_starts_at_the_end_as_it_was_before_the_lookup(service: TrainerService):
    # Records written while the rewind runs are read: the end is an offset taken first, not "the end" resolved later.
    consumer = RewindingConsumer({LE0}, young_from=None, end=4_000)
    service.consumer = consumer  # type: ignore[assignment]
    service.partitions_assigned(consumer, [LE0])  # type: ignore[arg-type]
    service.after_batch(CollectingOutputs())
    assert consumer.calls == [("seek", LE0, 4_000), ("resume", LE0)]
