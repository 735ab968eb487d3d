"""A bounded set of models, without Kafka: the admission decision, and the three services that ask it.

The services are driven record by record as the consume loop would; a refusal is the ``InvalidRecord`` with
reason ``unknown_model`` that the loop turns into a dead letter (``tests/integration/test_bounded_models.py``
checks that part against a broker).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from retrain.consumers.detector import DetectorService
from retrain.consumers.scorer import ScorerService
from retrain.consumers.service import InvalidRecord
from retrain.consumers.trainer import TrainerService
from retrain.decisions.admission import ModelAdmission, Verdict
from retrain.decisions.checkpoint import snapshot_key
from retrain.decisions.policy import ServedVersion
from retrain.decisions.training import TrainingConfig, estimator_factory
from retrain.kafka import Record
from retrain.registry import ModelRegistry
from retrain.schemas import LabeledExample, LabelEvent, ModelUpdatedEvent, PredictionEvent, UpdateOutcome, encode
from retrain.settings import DetectorSettings, ModelSettings, ScorerSettings, TopicSettings
from tests.helpers.scoring import KEY, register, requests, score, threshold_model, update

TOPICS = TopicSettings()
START = datetime(2026, 11, 28, tzinfo=UTC)


def random_ids(n: int, seed: int) -> list[str]:
    """``n`` distinct, seeded, valid model ids."""
    rng = random.Random(seed)
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids[f"flood-{rng.getrandbits(64):016x}"] = None
    return list(ids)


def series_models(service) -> set[str]:
    """Every model_id that has a series of its own in the service's metrics registry."""
    return {
        sample.labels["model_id"]
        for family in service.metrics.registry.collect()
        for sample in family.samples
        if "model_id" in sample.labels
    }


# -- the decision -----------------------------------------------------------------------------------------------


def test_without_an_allow_list_the_first_ids_up_to_the_cap_are_admitted_and_no_other():
    admission = ModelAdmission(max_models=3)

    assert [admission.admit(m) for m in ("a", "b", "a", "c", "d", "b", "e")] == [
        Verdict.NEW,
        Verdict.NEW,
        Verdict.ADMITTED,
        Verdict.NEW,
        Verdict.FULL,
        Verdict.ADMITTED,
        Verdict.FULL,
    ]
    assert admission.admitted == {"a", "b", "c"} and len(admission) == 3
    assert admission.refused == 2
    assert "d" not in admission and "a" in admission
    assert admission.why("d", Verdict.FULL) == (
        "model d is not admitted: this service already has its maximum of 3 models (set an allow-list of model "
        "ids, or raise the cap)"
    )


def test_an_allow_list_admits_exactly_its_ids_whatever_came_first_and_the_cap_does_not_apply():
    admission = ModelAdmission(allowed=["fraud", "churn", "ltv"], max_models=1)

    flood = [admission.admit(m) for m in random_ids(1_000, seed=1)]
    assert set(flood) == {Verdict.NOT_LISTED}
    assert [admission.admit(m) for m in ("churn", "fraud", "ltv", "churn")] == [
        Verdict.NEW,
        Verdict.NEW,
        Verdict.NEW,
        Verdict.ADMITTED,
    ]
    assert admission.admitted == {"fraud", "churn", "ltv"} and admission.refused == 1_000
    assert admission.why("x", Verdict.NOT_LISTED) == "model x is not on the allow-list of 3 model ids"


def test_an_empty_allow_list_means_any_id_up_to_the_cap():
    admission = ModelAdmission(allowed=[], max_models=2)

    assert admission.allowed is None
    assert [admission.admit(m) for m in ("a", "b", "c")] == [Verdict.NEW, Verdict.NEW, Verdict.FULL]


def test_known_models_are_admitted_beyond_the_cap_but_never_against_the_allow_list():
    capped = ModelAdmission(max_models=2)
    assert [capped.admit(m) for m in ("x1", "x2", "legit")] == [Verdict.NEW, Verdict.NEW, Verdict.FULL]
    assert capped.known("legit") is Verdict.NEW  # restored, promoted or registered: it was admitted before
    assert capped.known("x1") is Verdict.ADMITTED
    assert capped.admit("legit") is Verdict.ADMITTED
    assert capped.admit("x3") is Verdict.FULL  # the cap still holds for new ids
    assert capped.admitted == {"x1", "x2", "legit"} and capped.refused == 2  # known() refuses nothing it counts

    listed = ModelAdmission(allowed=["a"])
    assert listed.known("removed") is Verdict.NOT_LISTED and listed.known("a") is Verdict.NEW
    assert listed.admitted == {"a"}


def test_a_flood_of_100000_random_ids_admits_exactly_the_first_ones_up_to_the_cap():
    ids = random_ids(100_000, seed=7)
    admission = ModelAdmission(max_models=250)

    verdicts = [admission.admit(m) for m in ids]

    assert verdicts == [Verdict.NEW] * 250 + [Verdict.FULL] * 99_750
    assert admission.admitted == set(ids[:250]) and admission.refused == 99_750


def test_the_cap_is_at_least_one():
    with pytest.raises(ValueError, match="max_models must be at least 1, got 0"):
        ModelAdmission(max_models=0)


# -- settings -----------------------------------------------------------------------------------------------------


def test_settings_read_the_allow_list_the_cap_and_the_scorers_loaded_maximum_from_the_environment(monkeypatch):
    assert ModelSettings().allowed_ids == frozenset() and ModelSettings().max_per_service == 10_000
    assert ScorerSettings().max_loaded_models == 200
    monkeypatch.setenv("RETRAIN_MODELS_ALLOWED", " fraud, churn.v2 ,,ltv_3 ")
    monkeypatch.setenv("RETRAIN_MODELS_MAX_PER_SERVICE", "50")
    monkeypatch.setenv("RETRAIN_SCORER_MAX_LOADED_MODELS", "7")

    assert ModelSettings().allowed_ids == {"fraud", "churn.v2", "ltv_3"}
    assert ModelSettings().max_per_service == 50
    assert ScorerSettings().max_loaded_models == 7


@pytest.mark.parametrize("allowed", ["fraud,../etc", "a b", "-leading-dash", "x" * 65])
def test_an_allow_list_with_something_that_is_no_model_id_is_refused_at_start_up(allowed: str):
    with pytest.raises(ValidationError, match="not model ids"):
        ModelSettings(allowed=allowed)


@pytest.mark.parametrize("cap", [0, -1])
def test_a_cap_below_one_is_refused(cap: int):
    with pytest.raises(ValidationError):
        ModelSettings(max_per_service=cap)


# -- the detector ---------------------------------------------------------------------------------------------------


class MemoryChangelog:
    """The detector's changelog without Kafka: the latest snapshot of each partition."""

    def __init__(self) -> None:
        self.snapshots: dict[int, bytes] = {}

    def save(self, partition: int, snapshot: bytes) -> None:
        self.snapshots[partition] = snapshot

    def load(self, partition: int) -> bytes | None:
        return self.snapshots.get(partition)

    def close(self) -> None:
        pass


class CollectingOutputs:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def consumer_record(topic: str, partition: int, offset: int, event) -> Record:
    value = encode(event)
    key = event.model_id.encode()
    at = getattr(event, "timestamp", None) or event.label_timestamp
    return Record(topic, partition, offset, key, value, int(at.timestamp() * 1000))  # CreateTime: the event time


def joined_pair(model_id: str, i: int) -> tuple[PredictionEvent, LabelEvent]:
    at = START + timedelta(seconds=i)
    prediction = PredictionEvent(
        prediction_id=f"{model_id}-{i}",
        model_id=model_id,
        model_version=0,
        features={"x": 1.0},
        prediction=1,
        timestamp=at,
    )
    return prediction, LabelEvent(prediction_id=prediction.prediction_id, model_id=model_id, label=1, timestamp=at)


def feed_pairs(detector: DetectorService, partition: int, model_ids: list[str], first_offset: int = 0):
    """Each model's prediction then its label; returns the refusals as (topic, model_id, reason)."""
    out, refused = CollectingOutputs(), []
    for n, model_id in enumerate(model_ids):
        pair = joined_pair(model_id, first_offset + n)
        for topic, event in zip((TOPICS.predictions, TOPICS.labels), pair, strict=True):
            try:
                detector.handle(consumer_record(topic, partition, first_offset + n, event), out)  # type: ignore[arg-type]
            except InvalidRecord as refusal:
                refused.append((topic, model_id, refusal.reason))
    detector.after_batch(out)  # the end of the poll batch: its metrics are reported
    return out, refused


def detector(admission: ModelAdmission, changelog: MemoryChangelog | None = None) -> DetectorService:
    key = snapshot_key(b"k" * 40) if changelog is not None else None
    return DetectorService(DetectorSettings(), TOPICS, changelog=changelog, state_key=key, admission=admission)  # type: ignore[arg-type]


def test_the_detector_watches_and_labels_series_only_for_admitted_models_and_refuses_both_sides_of_the_others():
    service = detector(ModelAdmission(max_models=3))
    flood = random_ids(500, seed=3)

    out, refused = feed_pairs(service, 0, ["known-a", "known-b", *flood])

    assert refused == [(topic, m, "unknown_model") for m in flood[1:] for topic in (TOPICS.predictions, TOPICS.labels)]
    assert set(service.watches) == {"known-a", "known-b", flood[0]}
    assert [e.model_id for e in out.events if isinstance(e, LabeledExample)] == ["known-a", "known-b", flood[0]]
    assert series_models(service) == {"known-a", "known-b", flood[0]}
    assert service.joiners[0].pending_predictions == 0 and service.joiners[0].pending_labels == 0  # none buffered
    registry = service.metrics.registry
    assert registry.get_sample_value("retrain_models_admitted", {"service": "detector"}) == 3
    assert registry.get_sample_value("retrain_labeled_examples_total", {"model_id": "known-a"}) == 1


def test_after_a_restart_a_model_with_a_restored_watch_stays_admitted_though_a_flood_came_first():
    changelog = MemoryChangelog()
    before = detector(ModelAdmission(max_models=2), changelog)
    feed_pairs(before, 1, ["legit"])
    before.prepare_commit({})  # snapshots partition 1: legit's watch
    assert set(changelog.snapshots) == {1}

    after = detector(ModelAdmission(max_models=2), changelog)
    flood = random_ids(100, seed=4)
    _, refused_flood = feed_pairs(after, 0, flood)  # partition 0 has no snapshot: the flood takes the cap
    _, refused_legit = feed_pairs(after, 1, ["legit"], first_offset=1)  # restores partition 1 first

    assert len(refused_flood) == 2 * 98 and refused_legit == []
    assert set(after.watches) == {flood[0], flood[1], "legit"}
    assert after.watches["legit"].position == 2  # the restored watch, carried on
    assert after.admission.admission.admitted == {flood[0], flood[1], "legit"}


def test_without_an_allow_list_a_new_legitimate_model_after_a_flood_is_refused_and_with_one_it_is_not():
    first_come = detector(ModelAdmission(max_models=2))
    listed = detector(ModelAdmission(allowed=["legit"], max_models=2))
    flood = random_ids(10, seed=5)

    for service in (first_come, listed):
        feed_pairs(service, 0, flood)
    _, refused_first_come = feed_pairs(first_come, 0, ["legit"], first_offset=10)
    _, refused_listed = feed_pairs(listed, 0, ["legit"], first_offset=10)

    assert refused_first_come == [
        (TOPICS.predictions, "legit", "unknown_model"),
        (TOPICS.labels, "legit", "unknown_model"),
    ]
    assert refused_listed == []
    assert set(listed.watches) == {"legit"} and series_models(listed) == {"legit"}


def test_a_promoted_version_makes_a_model_known_to_the_detector_unless_the_allow_list_leaves_it_out():
    service = detector(ModelAdmission(allowed=["fraud"], max_models=1))
    for model_id in ("fraud", "stranger"):
        service._on_update(
            ModelUpdatedEvent(
                model_id=model_id,
                version=3,
                promoted=True,
                outcome=UpdateOutcome.PROMOTED,
                artifact_uri=f"file:///models/{model_id}/3/model.joblib",
                sha256="0" * 64,
            )
        )

    assert service.versions == {"fraud": ServedVersion(3)}
    assert series_models(service) == {"fraud"}


# -- the trainer ----------------------------------------------------------------------------------------------------


def trainer(registry: ModelRegistry, admission: ModelAdmission) -> TrainerService:
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"random_state": 0})
    return TrainerService(
        TOPICS,
        registry,
        TrainingConfig(min_window=100, max_window=5_000, default_window=1_000, min_holdout=20, min_train=50),
        lambda model_id, task: tree,
        buffer_max_examples=10_000,
        buffer_max_age_s=10**9,
        cold_start_min=500,
        admission=admission,
    )


def labeled(model_id: str, i: int) -> LabeledExample:
    at = START + timedelta(seconds=i)
    return LabeledExample(
        prediction_id=f"{model_id}-{i}",
        model_id=model_id,
        model_version=0,
        features={"x": 0.5},
        prediction=0,
        label=1,
        prediction_timestamp=at,
        label_timestamp=at,
    )


def test_the_trainer_buffers_admitted_models_only_and_knows_every_model_of_its_registry(tmp_path: Path):
    registry = ModelRegistry(tmp_path / "models", KEY)
    register(registry, "registered", threshold_model(above=1), promote=True)
    service = trainer(registry, ModelAdmission(max_models=2))
    flood = random_ids(300, seed=6)
    refused = []
    for offset, model_id in enumerate([*flood, "registered"]):
        try:
            service.handle(consumer_record(TOPICS.labeled_examples, 0, offset, labeled(model_id, offset)), None)  # type: ignore[arg-type]
        except InvalidRecord as refusal:
            refused.append((model_id, refusal.reason))
    service.after_batch(CollectingOutputs())  # type: ignore[arg-type]

    # The registered model is known from the start and takes one of the two places: one for the flood.
    assert refused == [(m, "unknown_model") for m in flood[1:]]
    assert set(service.buffers) == {flood[0], "registered"}
    assert series_models(service) == {flood[0], "registered"}
    assert service.metrics.registry.get_sample_value("retrain_models_admitted", {"service": "trainer"}) == 2


# -- the scorer -----------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", KEY)


def scorer(registry: ModelRegistry, admission: ModelAdmission | None = None, max_loaded: int = 2) -> ScorerService:
    return ScorerService(
        TOPICS,
        registry,
        fallback="unknown",
        admission=admission if admission is not None else ModelAdmission(),
        max_loaded=max_loaded,
    )


def test_the_scorer_keeps_at_most_max_loaded_models_and_unloads_the_least_recently_used(registry: ModelRegistry):
    for model_id in ("a", "b", "c"):
        register(registry, model_id, threshold_model(above=1), promote=True)
    service = scorer(registry, max_loaded=2)
    value = service.metrics.registry.get_sample_value

    for model_id in ("a", "b", "a", "c"):  # c unloads b: a was used more recently
        out = score(service, requests(model_id, [0.9]))
        assert [(e.model_id, e.prediction, e.model_version) for e in out.events] == [(model_id, 1, 1)]

    assert set(service.served) == {"a", "c"} and list(service._loaded) == ["a", "c"]
    assert value("retrain_scorer_loaded_models") == 2 and value("retrain_model_unloads_total") == 1
    score(service, requests("b", [0.9]))  # loaded again on demand: a goes
    assert set(service.served) == {"b", "c"} and value("retrain_model_unloads_total") == 2
    assert value("retrain_model_load_failures_total", {"model_id": "b"}) == 0


def test_a_model_loaded_again_after_its_unloading_is_verified_as_the_first_time(registry: ModelRegistry):
    info = register(registry, "a", threshold_model(above=1), promote=True)
    register(registry, "b", threshold_model(above=1), promote=True)
    service = scorer(registry, max_loaded=1)
    score(service, requests("a", [0.9]))
    score(service, requests("b", [0.9]))  # a unloaded
    artifact = registry.path / "a" / str(info.version) / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"!")

    out = score(service, requests("a", [0.9]))

    assert [(e.prediction, e.model_version) for e in out.events] == [("unknown", 0)]  # refused: the fallback
    assert service.metrics.registry.get_sample_value("retrain_model_load_failures_total", {"model_id": "a"}) == 1


def test_an_update_of_an_unloaded_model_is_noted_and_its_next_request_loads_that_version(registry: ModelRegistry):
    register(registry, "a", threshold_model(above=1), promote=True)
    register(registry, "b", threshold_model(above=1), promote=True)
    service = scorer(registry, max_loaded=1)
    score(service, requests("a", [0.9]))
    score(service, requests("b", [0.9]))  # a unloaded
    version_2 = register(registry, "a", threshold_model(above=0), promote=True)

    assert service.model_updated(update(version_2)) is False  # not loaded: noted, nothing to swap
    out = score(service, requests("a", [0.9]))

    assert [(e.prediction, e.model_version) for e in out.events] == [(0, 2)]
    assert set(service.served) == {"a"}


def test_the_scorer_refuses_requests_of_models_it_does_not_admit_and_gives_them_no_series(registry: ModelRegistry):
    register(registry, "served", threshold_model(above=1), promote=True)
    service = scorer(registry, ModelAdmission(max_models=1))
    flood = random_ids(200, seed=8)
    refused = []
    out = CollectingOutputs()
    for offset, request in enumerate([*requests("served", [0.9]), *(requests(m, [0.5])[0] for m in flood)]):
        try:
            service.handle(consumer_record(TOPICS.scoring_requests, 0, offset, request), out)  # type: ignore[arg-type]
        except InvalidRecord as refusal:
            refused.append((request.model_id, refusal.reason))
    service.after_batch(out)  # type: ignore[arg-type]

    assert refused == [(m, "unknown_model") for m in flood]
    assert [(e.model_id, e.prediction) for e in out.events] == [("served", 1)]
    assert series_models(service) == {"served"}
    assert set(service.served) == {"served"} and service.announced == {}


def test_a_promoted_update_makes_a_model_known_to_the_scorer_beyond_the_cap(registry: ModelRegistry):
    service = scorer(registry, ModelAdmission(max_models=1))
    score(service, requests("first", [0.5]))
    promoted = register(registry, "promoted", threshold_model(above=1), promote=True)

    service.model_updated(update(promoted))
    out = score(service, requests("promoted", [0.9]))

    assert [(e.prediction, e.model_version) for e in out.events] == [(1, 1)]
    assert service.admission.admission.admitted == {"first", "promoted"}


def test_a_model_update_brings_its_validation_to_the_watch_even_after_the_watch_adopted_its_version():
    service = detector(ModelAdmission(allowed=["fraud"], max_models=1))
    out = CollectingOutputs()
    prediction, label = joined_pair("fraud", 0)
    prediction = prediction.model_copy(update={"model_version": 3})  # scored by version 3 before its update arrived
    for offset, (topic, event) in enumerate(((TOPICS.predictions, prediction), (TOPICS.labels, label))):
        service.handle(consumer_record(topic, 0, offset, event), out)  # type: ignore[arg-type]
    watch = service.watches["fraud"]
    assert (watch.version, watch.validation_accuracy, watch.validation_holdout) == (3, None, None)

    def promoted(version: int, accuracy: float, holdout: float) -> ModelUpdatedEvent:
        return ModelUpdatedEvent(
            model_id="fraud",
            version=version,
            promoted=True,
            outcome=UpdateOutcome.PROMOTED,
            metrics={"accuracy": accuracy, "n_holdout": holdout, "n_train": 4 * holdout},
            artifact_uri=f"file:///models/fraud/{version}/model.joblib",
            sha256="0" * 64,
        )

    service._on_update(promoted(3, 0.91, 300.0))
    assert (watch.version, watch.validation_accuracy, watch.validation_holdout) == (3, 0.91, 300)
    assert watch.examples == 1  # the same version: its baseline goes on

    service._on_update(promoted(4, 0.88, 250.0))
    assert (watch.version, watch.validation_accuracy, watch.validation_holdout) == (4, 0.88, 250)
    assert watch.examples == 0
    assert service.versions == {"fraud": ServedVersion(4, 0.88, 250)}
