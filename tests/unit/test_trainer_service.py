"""The trainer service's decisions without Kafka: failures as events, coalescing, the cold-start minimum."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrain.consumers.trainer import TrainerService
from retrain.decisions.episode import STALE
from retrain.decisions.training import TrainingConfig, estimator_factory
from retrain.kafka import Record, TopicPartition
from retrain.registry import ModelRegistry
from retrain.schemas import Evidence, LabeledExample, RetrainEvent, RetrainReason, TrainingWindow, UpdateOutcome, encode
from retrain.settings import TopicSettings

pytestmark = pytest.mark.slow  # fit worker processes

START = datetime(2026, 11, 28, tzinfo=UTC)
TOPICS = TopicSettings()


class CollectingOutputs:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def record(topic: str, event, offset: int) -> Record:
    value = encode(event)
    return Record(topic, 0, offset, event.model_id.encode(), value, -1)  # -1: no timestamp, as Kafka says it


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


TREE = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"random_state": 0})


def make_service(tmp_path: Path, estimators: dict | None = None, **options) -> TrainerService:
    """A trainer whose estimator is a decision tree, or the one ``estimators`` names for a model."""
    return TrainerService(
        TOPICS,
        ModelRegistry(tmp_path, "s" * 40),
        TrainingConfig(min_window=100, max_window=5_000, default_window=1_000, min_holdout=20, min_train=50),
        lambda model_id, task: (estimators or {}).get(model_id, TREE),
        buffer_max_examples=10_000,
        buffer_max_age_s=10**9,
        cold_start_min=500,
        **options,
    )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TrainerService]:
    service = make_service(tmp_path)
    yield service
    service.close()


def handle(
    service: TrainerService, *events, offset: int = 0, out: CollectingOutputs | None = None
) -> CollectingOutputs:
    """Hand the events to the service as one batch (offsets from ``offset``), then end the batch."""
    out = out if out is not None else CollectingOutputs()
    for at, event in enumerate(events, start=offset):
        topic = TOPICS.labeled_examples if isinstance(event, LabeledExample) else TOPICS.retrain_events
        service.handle(record(topic, event, at), out)
    service.after_batch(out)
    return out


def settle(service: TrainerService, out: CollectingOutputs, timeout_s: float = 60.0) -> CollectingOutputs:
    """End batches (as the loop does after each poll) until no fit runs and no event can start one."""
    deadline = time.monotonic() + timeout_s
    while service.fitting:
        assert time.monotonic() < deadline, f"fits still running: {sorted(service.fitting)}"
        time.sleep(0.02)
        service.after_batch(out)
    return out


def feed(service: TrainerService, *events) -> CollectingOutputs:
    """One batch, then every fit it started, answered."""
    return settle(service, handle(service, *events))


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


def test_a_challenger_for_a_champion_presumed_good_needs_evidence_and_the_answer_says_why(service: TrainerService):
    feed(service, *examples("steady", 1_200, seed=1), RetrainEvent(model_id="steady", reason=RetrainReason.MANUAL))
    same = [e.model_copy(update={"prediction_id": f"s{i}"}) for i, e in enumerate(examples("steady", 1_000, seed=2))]
    event = RetrainEvent(
        model_id="steady",
        reason=RetrainReason.DATA_VOLUME,
        detector="data_volume",
        evidence=Evidence(values={STALE: 0.0}),
        suggested_window=TrainingWindow(last_n=2_200),
    )
    [update] = feed(service, *same, event).events
    assert update.outcome is UpdateOutcome.REJECTED and update.version == 2
    assert update.metrics["promotion_p_value"] > 0.05
    assert update.detail is not None and "not better beyond noise (one-sided paired test p=" in update.detail
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


# -- fits in worker processes ---------------------------------------------------------------------------------------

RE0 = TopicPartition(TOPICS.retrain_events, 0)


def gated(tmp_path: Path, name: str = "gate") -> tuple[Path, object]:
    """A tree whose fit waits until the returned path exists."""
    gate = tmp_path / name
    return gate, estimator_factory("tests.helpers.fit_jobs.GatedTree", {"gate": str(gate)})


@pytest.fixture
def gated_m(tmp_path: Path) -> Iterator[tuple[TrainerService, Path]]:
    """A trainer whose fits of model "m" wait for the gate (the path) to exist."""
    gate, tree = gated(tmp_path)
    service = make_service(tmp_path, {"m": tree})
    yield service, gate
    service.close()


def test_the_answer_comes_in_a_later_batch_and_the_event_is_committed_only_then(gated_m):
    service, gate = gated_m
    event = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL)
    out = handle(service, *examples("m", 1_200), event)  # the event is offset 1,200
    assert out.events == [] and list(service.fitting) == [event.event_id]
    for batch in range(5):  # batches go on while the fit waits
        more = [e.model_copy(update={"prediction_id": f"b{batch}-{i}"}) for i, e in enumerate(examples("m", 2))]
        handle(service, *more, offset=2_000, out=out)
    assert out.events == [] and service.committable(RE0, 1_500) == 1_200
    assert len(service.buffer("m")) == 1_210  # still buffering
    gate.touch()
    [update] = settle(service, out).events
    assert (update.trigger_event_id, update.version, update.promoted) == (event.event_id, 1, True)
    assert service.committable(RE0, 1_500) == 1_500


def test_events_that_arrive_during_a_fit_make_one_more_fit_with_the_newest(gated_m):
    service, gate = gated_m
    first = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL)
    second = RetrainEvent(model_id="m", reason=RetrainReason.DRIFT)
    third = RetrainEvent(model_id="m", reason=RetrainReason.PERFORMANCE)
    out = handle(service, *examples("m", 1_200), first)
    handle(service, second, third, offset=1_201, out=out)
    assert list(service.fitting) == [first.event_id]
    assert {m: e.event_id for m, e in service.pending.items()} == {"m": third.event_id}
    assert service.committable(RE0, 1_203) == 1_200
    gate.touch()
    updates = settle(service, out).events
    assert [u.trigger_event_id for u in updates] == [first.event_id, third.event_id]
    assert [u.version for u in updates] == [1, 2]
    assert [v.reason for v in service.registry.versions("m")] == ["manual", "performance"]
    assert service.metrics.coalesced.labels("m")._value.get() == 1
    assert service.committable(RE0, 1_203) == 1_203


def test_a_fit_past_the_timeout_is_a_failed_outcome_and_the_champion_stays(tmp_path: Path):
    _, tree = gated(tmp_path)
    service = make_service(tmp_path, {"m": TREE}, fit_timeout_s=1.0)
    try:
        [first] = feed(service, *examples("m", 1_200), RetrainEvent(model_id="m", reason=RetrainReason.MANUAL)).events
        assert first.version == 1
        service.factory_for = lambda model_id, task: tree  # the next fit waits for a gate that never opens
        late = RetrainEvent(model_id="m", reason=RetrainReason.DRIFT)
        [update] = feed(service, late).events
        assert (update.outcome, update.promoted, update.version) == (UpdateOutcome.FAILED, False, None)
        assert update.detail == "fit_timeout: the fit ran longer than 1 s (RETRAIN_TRAINER_FIT_TIMEOUT_S)"
        assert (update.trigger_event_id, update.previous_version) == (late.event_id, 1)
        assert service.registry.champion("m").version == 1 and len(service.registry.versions("m")) == 1
    finally:
        service.close()


def test_a_fit_worker_that_dies_is_a_failed_outcome_and_the_next_fit_runs(tmp_path: Path):
    crash = estimator_factory("tests.helpers.fit_jobs.CrashingTree")
    service = make_service(tmp_path, {"doomed": crash})
    try:
        doomed = RetrainEvent(model_id="doomed", reason=RetrainReason.MANUAL)
        [update] = feed(service, *examples("doomed", 1_200), doomed).events
        assert update.outcome is UpdateOutcome.FAILED
        assert update.detail == "fit_worker_died: the fit worker died (exit code 9)"
        assert service.registry.versions("doomed") == []
        [fine] = feed(
            service, *examples("fine", 1_200), RetrainEvent(model_id="fine", reason=RetrainReason.MANUAL)
        ).events
        assert (fine.version, fine.promoted) == (1, True)
    finally:
        service.close()


def test_a_fit_whose_event_partition_is_revoked_is_dropped_unanswered(gated_m):
    service, gate = gated_m
    event = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL)
    out = handle(service, *examples("m", 1_200), event)
    service.partitions_revoked([RE0])  # the next owner of the partition answers it
    assert service.committable(RE0, 1_201) == 1_201
    gate.touch()
    assert settle(service, out).events == [] and service.registry.versions("m") == []


def test_an_event_read_again_while_its_fit_runs_is_answered_by_that_fit(gated_m):
    service, gate = gated_m
    event = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL)
    out = handle(service, *examples("m", 1_200), event)
    service.partitions_revoked([RE0])  # a rewind: the same partition, read again from its commit
    handle(service, event, offset=1_200, out=out)
    assert service.committable(RE0, 1_201) == 1_200
    gate.touch()
    [update] = settle(service, out).events
    assert (update.trigger_event_id, update.version) == (event.event_id, 1)
    assert len(service.registry.versions("m")) == 1


def test_with_two_workers_a_model_is_answered_while_another_is_still_fitting(tmp_path: Path):
    gate, tree = gated(tmp_path)
    service = make_service(tmp_path, {"slow": tree}, fit_workers=2)
    try:
        slow = RetrainEvent(model_id="slow", reason=RetrainReason.MANUAL)
        quick = RetrainEvent(model_id="quick", reason=RetrainReason.MANUAL)
        out = handle(service, *examples("slow", 1_200), *examples("quick", 1_200), slow, quick)
        deadline = time.monotonic() + 60
        while not out.events:
            assert time.monotonic() < deadline
            time.sleep(0.02)
            service.after_batch(out)
        assert [u.trigger_event_id for u in out.events] == [quick.event_id]
        assert list(service.fitting) == [slow.event_id]
        gate.touch()
        assert [u.trigger_event_id for u in settle(service, out).events] == [quick.event_id, slow.event_id]
    finally:
        service.close()


def stage_count(service: TrainerService, stage: str) -> float:
    return service.metrics.registry.get_sample_value("retrain_loop_stage_seconds_count", {"stage": stage}) or 0.0


def test_the_answer_carries_the_retrain_events_trace_and_times_the_trainers_stages(service: TrainerService):
    detected = START.replace(year=2030)  # a clock far ahead of the trainer's: the stage is not negative
    event = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL, trace={"detected": detected})
    [update] = feed(service, *examples("m", 1_200), event).events
    trace = update.trace
    assert trace.detected == detected
    assert trace.received <= trace.fit_started <= trace.fit_finished <= update.updated_at
    stages = ("published", "delivered", "queued", "fit", "registered")
    assert [stage_count(service, s) for s in stages] == [0, 0, 1, 1, 1]  # the record has no timestamp


def test_a_record_timestamp_times_publication_and_delivery(service: TrainerService):
    event = RetrainEvent(model_id="m", reason=RetrainReason.MANUAL, trace={"detected": datetime.now(UTC)})
    out = CollectingOutputs()
    stamped = Record(TOPICS.retrain_events, 0, 0, b"m", encode(event), int(time.time() * 1000))
    service.handle(stamped, out)
    assert stage_count(service, "published") == 1 and stage_count(service, "delivered") == 1
    published = service.metrics.registry.get_sample_value("retrain_loop_stage_seconds_sum", {"stage": "published"})
    assert 0 <= published < 60
