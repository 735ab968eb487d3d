"""The scorer's decisions without Kafka, on a real registry: batches, fallback, hot swaps, refused versions."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from retrain.consumers.scorer import ScorerService
from retrain.decisions.scoring import RowResult, ServedModel, score_batch
from retrain.decisions.training import Estimator, FittedModel, TrainingConfig, train_challenger
from retrain.registry import ModelRegistry
from retrain.schemas import (
    EventDecodeError,
    LabeledExample,
    PredictionEvent,
    RetrainTrace,
    ScoringRequest,
    UpdateOutcome,
    encode,
)
from tests.helpers.scoring import (
    KEY,
    START,
    TOPICS,
    CollectingOutputs,
    record,
    register,
    requests,
    score,
    threshold_model,
    update,
)


def metric(service: ScorerService, name: str, **labels: str) -> float | None:
    return service.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", KEY)


@pytest.fixture
def service(registry: ModelRegistry) -> ScorerService:
    return ScorerService(TOPICS, registry, fallback="unknown")


XS = [0.1, 0.9, 0.4, 0.6, 0.95]


def test_a_model_with_no_version_gets_the_fallback_with_version_0(service: ScorerService):
    out = score(service, requests("cold", XS))

    assert [(e.prediction, e.model_version) for e in out.events] == [("unknown", 0)] * 5
    assert out.dead == []
    assert metric(service, "retrain_predictions_total", model_id="cold") == 5
    assert metric(service, "retrain_scorer_model_version", model_id="cold") == 0
    assert metric(service, "retrain_model_swaps_total", model_id="cold") == 0


def test_the_champion_scores_the_batch_and_the_request_carries_through(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    batch = requests("m", XS)

    out = score(service, batch)

    assert [e.prediction for e in out.events] == [0, 1, 0, 1, 1]
    assert {e.model_version for e in out.events} == {1}
    for event, request in zip(out.events, batch, strict=True):
        assert (event.prediction_id, event.model_id, event.features, event.timestamp) == (
            request.prediction_id,
            request.model_id,
            request.features,
            request.timestamp,
        )
    assert metric(service, "retrain_scorer_model_version", model_id="m") == 1
    assert metric(service, "retrain_scoring_batch_seconds_count") == 1


def test_a_promoted_update_swaps_between_batches_and_nothing_is_scored_twice(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    first = score(service, requests("m", XS))
    v2 = register(registry, "m", threshold_model(above=0), promote=True)

    assert service.model_updated(update(v2)) is True
    second = score(service, requests("m", XS, start=5), first_offset=5)

    assert [(e.prediction, e.model_version) for e in first.events] == [(0, 1), (1, 1), (0, 1), (1, 1), (1, 1)]
    assert [(e.prediction, e.model_version) for e in second.events] == [(1, 2), (0, 2), (1, 2), (0, 2), (0, 2)]
    ids = [e.prediction_id for e in first.events + second.events]
    assert ids == [f"m-{i}" for i in range(10)]
    assert metric(service, "retrain_model_swaps_total", model_id="m") == 1
    assert metric(service, "retrain_scorer_model_version", model_id="m") == 2
    assert service.model_updated(update(v2)) is False  # the version in service already: no second swap


def test_a_batch_is_scored_by_one_version_even_when_the_update_arrives_while_it_is_read(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", [0.9]))  # version 1 in service
    v2 = register(registry, "m", threshold_model(above=0), promote=True)
    out = CollectingOutputs()
    batch = requests("m", XS, start=1)
    service.handle(record(batch[0], 1), out)  # type: ignore[arg-type]
    service.model_updated(update(v2))
    for offset, request in enumerate(batch[1:], start=2):
        service.handle(record(request, offset), out)  # type: ignore[arg-type]
    service.after_batch(out)  # type: ignore[arg-type]

    assert [e.model_version for e in out.events] == [2] * 5


def test_a_rollback_swaps_back_to_the_earlier_version(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    register(registry, "m", threshold_model(above=0), promote=True)
    assert [e.model_version for e in score(service, requests("m", XS)).events] == [2] * 5

    back = registry.rollback("m")
    assert service.model_updated(update(back, outcome=UpdateOutcome.ROLLED_BACK)) is True
    assert [e.prediction for e in score(service, requests("m", XS, 5)).events] == [0, 1, 0, 1, 1]


def test_a_version_that_fails_verification_is_not_loaded_and_the_old_one_keeps_serving(service, registry, caplog):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", XS))
    v2 = register(registry, "m", threshold_model(above=0), promote=True)
    artifact = registry.path / "m" / "2" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")

    assert service.model_updated(update(v2)) is False
    assert service.model_updated(update(dataclasses.replace(v2, version=7))) is False  # no such version
    out = score(service, requests("m", XS, 5))

    assert [(e.prediction, e.model_version) for e in out.events] == [(0, 1), (1, 1), (0, 1), (1, 1), (1, 1)]
    assert metric(service, "retrain_model_load_failures_total", model_id="m") == 2
    assert metric(service, "retrain_model_swaps_total", model_id="m") == 0
    assert metric(service, "retrain_scorer_model_version", model_id="m") == 1
    assert "m: version 2 could not be loaded, still serving version 1" in caplog.text
    assert "sha256 of model.joblib does not match" in caplog.text
    assert KEY not in caplog.text


def test_an_update_whose_sha256_is_not_the_registrys_is_refused(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", XS))
    v2 = register(registry, "m", threshold_model(above=0), promote=True)

    assert service.model_updated(update(v2, sha256="0" * 64)) is False
    assert service.serving("m").version == 1
    assert metric(service, "retrain_model_load_failures_total", model_id="m") == 1
    assert service.model_updated(update(v2)) is True  # the genuine announcement goes through
    assert service.serving("m").version == 2


def test_an_artifact_that_is_not_a_fitted_model_is_refused(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", XS))
    bare = register(registry, "m", DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]), promote=True)

    assert service.model_updated(update(bare)) is False
    assert service.serving("m").version == 1


def test_a_tampered_champion_on_first_sight_leaves_the_fallback(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    artifact = registry.path / "m" / "1" / "model.joblib"
    artifact.write_bytes(b"not what was signed")

    out = score(service, requests("m", XS))

    assert [(e.prediction, e.model_version) for e in out.events] == [("unknown", 0)] * 5
    assert metric(service, "retrain_model_load_failures_total", model_id="m") == 1


def test_the_cold_start_swaps_from_the_fallback_to_version_1(service, registry):
    assert [e.model_version for e in score(service, requests("m", XS)).events] == [0] * 5
    v1 = register(registry, "m", threshold_model(above=1), promote=True)

    assert service.model_updated(update(v1)) is True
    assert [(e.prediction, e.model_version) for e in score(service, requests("m", [0.9], 5)).events] == [(1, 1)]


def test_an_update_for_a_model_not_served_yet_is_only_noted(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    v2 = register(registry, "m", threshold_model(above=0), promote=False)

    assert service.model_updated(update(v2)) is False  # not loaded: the model has had no request yet
    assert "m" not in service.served
    # Its first request loads the registry's champion (version 1: version 2 was never promoted there).
    assert [e.model_version for e in score(service, requests("m", [0.9])).events] == [1]


def test_the_champion_is_not_loaded_when_its_announced_sha256_differs(service, registry):
    v1 = register(registry, "m", threshold_model(above=1), promote=True)
    service.model_updated(update(v1, sha256="f" * 64))  # noted before the first request

    assert [e.model_version for e in score(service, requests("m", [0.9])).events] == [0]
    assert metric(service, "retrain_model_load_failures_total", model_id="m") == 1


def test_requests_the_model_cannot_use_are_dead_lettered_and_the_rest_scored(service, registry):
    rng = random.Random(1)
    xs = [rng.random() for _ in range(300)]
    logistic = LogisticRegression().fit([[x] for x in xs], [int(x > 0.5) for x in xs])
    register(registry, "m", FittedModel(logistic, ["x"], "classification"), promote=True)
    batch = requests("m", XS)
    # No "x": the model sees NaN, which a logistic regression refuses (ValueError from scikit-learn).
    batch[1] = batch[1].model_copy(update={"features": {"y": 1.0}})
    batch[3] = batch[3].model_copy(update={"features": {"y": 2.0}})

    out = score(service, batch)

    assert [e.prediction_id for e in out.events] == ["m-0", "m-2", "m-4"]
    assert [e.prediction for e in out.events] == [0, 0, 1]
    assert [(offset, reason) for offset, reason, _ in out.dead] == [(1, "unusable_features"), (3, "unusable_features")]
    assert out.dead[0][2].startswith("m version 1 cannot score these features: ValueError: Input X contains NaN")
    assert metric(service, "retrain_predictions_total", model_id="m") == 3


def test_one_predict_call_per_model_per_batch(service, registry):
    calls: list[int] = []
    register(registry, "a", threshold_model(above=1), promote=True)
    register(registry, "b", threshold_model(above=0), promote=True)
    for model_id in ("a", "b"):
        model = service.serving(model_id).model
        assert model is not None
        predict = model.estimator.predict
        model.estimator.predict = lambda rows, predict=predict: calls.append(len(rows)) or predict(rows)
    mixed = [r for pair in zip(requests("a", XS), requests("b", XS), strict=True) for r in pair]

    out = score(service, mixed)

    assert sorted(calls) == [5, 5]
    assert [e.prediction_id for e in out.events] == [f"a-{i}" for i in range(5)] + [f"b-{i}" for i in range(5)]


def test_undecodable_and_wrong_schema_requests_raise_for_the_dead_letter_topic(service):
    prediction = PredictionEvent(
        prediction_id="p", model_id="m", model_version=1, features={"x": 1.0}, prediction=1, timestamp=START
    )
    with pytest.raises(EventDecodeError) as wrong_schema:
        service.handle(record(encode(prediction), 0), CollectingOutputs())  # type: ignore[arg-type]
    with pytest.raises(EventDecodeError) as garbage:
        service.handle(record(b"\xff\x00", 1), CollectingOutputs())  # type: ignore[arg-type]

    assert (wrong_schema.value.reason, garbage.value.reason) == ("validation", "invalid_utf8")
    out = CollectingOutputs()
    service.after_batch(out)  # type: ignore[arg-type]
    assert out.events == []  # neither was kept for scoring


def test_score_batch_isolates_the_failing_rows_by_halving():
    rng = random.Random(2)
    xs = [rng.random() for _ in range(200)]
    model = FittedModel(
        LogisticRegression().fit([[x] for x in xs], [int(x > 0.5) for x in xs]), ["x"], "classification"
    )
    rows = [{"x": x} for x in [0.2, 0.8, 0.3, 0.7, 0.1, 0.9, 0.4, 0.6]]
    for bad in (2, 7):
        rows[bad] = {"y": 1.0}

    results = score_batch(ServedModel("m", 1, model), rows, fallback=0)

    assert [r.error is None for r in results] == [True, True, False, True, True, True, True, False]
    assert [r.prediction for r in results if r.error is None] == [0, 1, 1, 0, 1, 0]
    assert score_batch(ServedModel("m", 0), rows[:2], fallback="x") == [RowResult("x"), RowResult("x")]
    assert score_batch(ServedModel("m", 1, model), [], fallback=0) == []


class Predicts:
    """An estimator that answers the given values, one per row, in turn."""

    def __init__(self, values: list) -> None:
        self.values = values

    def predict(self, rows):
        return [self.values[i % len(self.values)] for i in range(len(rows))]


def test_a_prediction_that_is_no_valid_target_is_dead_lettered_and_the_rest_are_valid_events(service):
    answers = [1.5, float("nan"), 2**70, "", True, "x" * 257, -3, float("inf")]
    service.served["m"] = ServedModel("m", 4, FittedModel(Predicts(answers), ["x"], "classification"))
    batch = requests("m", [0.0] * len(answers))

    out = score(service, batch)

    assert [(offset, reason) for offset, reason, _ in out.dead] == [
        (1, "invalid_prediction"),
        (2, "invalid_prediction"),
        (3, "invalid_prediction"),
        (5, "invalid_prediction"),
        (7, "invalid_prediction"),
    ]
    assert out.dead[0][2].startswith("m version 4 predicted nan: ")
    for event in out.events:  # what the model itself would have validated, field for field
        validated = PredictionEvent.model_validate(event.model_dump())
        assert event == validated and event.model_dump_json() == validated.model_dump_json()
    assert [(e.prediction_id, e.prediction) for e in out.events] == [("m-0", 1.5), ("m-4", True), ("m-6", -3)]
    assert metric(service, "retrain_predictions_total", model_id="m") == 3
    registry = service.metrics.registry
    assert registry.get_sample_value("retrain_processing_latency_seconds_count", {"service": "scorer"}) == 3


def test_a_traced_swap_times_the_last_stages_once_at_its_first_prediction(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", XS))
    v2 = register(registry, "m", threshold_model(above=0), promote=True)
    detected = datetime.now(UTC) - timedelta(seconds=30)
    traced = update(v2).model_copy(update={"trace": RetrainTrace(detected=detected)})
    assert service.model_updated(traced) is True
    assert metric(service, "retrain_loop_stage_seconds_count", stage="swapped") == 1
    assert metric(service, "retrain_loop_stage_seconds_count", stage="first_served") is None
    score(service, requests("m", XS, start=5), first_offset=5)
    score(service, requests("m", XS, start=10), first_offset=10)  # not the first prediction any more
    assert metric(service, "retrain_loop_stage_seconds_count", stage="first_served") == 1
    assert metric(service, "retrain_loop_stage_seconds_count", stage="total") == 1
    assert 30 <= metric(service, "retrain_loop_stage_seconds_sum", stage="total") < 90


def test_a_swap_by_hand_is_not_timed_as_a_retrain(service, registry):
    register(registry, "m", threshold_model(above=1), promote=True)
    score(service, requests("m", XS))
    v2 = register(registry, "m", threshold_model(above=0), promote=True)
    assert service.model_updated(update(v2)) is True  # `retrain models promote`: no trace
    score(service, requests("m", XS, start=5), first_offset=5)
    assert metric(service, "retrain_loop_stage_seconds_count", stage="swapped") is None
    assert metric(service, "retrain_loop_stage_seconds_count", stage="total") is None


def labeled_example(prediction_id: str, features: dict, label: int) -> LabeledExample:
    return LabeledExample(
        prediction_id=prediction_id,
        model_id="m",
        model_version=1,
        features=features,
        prediction=0,
        label=label,
        prediction_timestamp=START,
        label_timestamp=START,
    )


def categorical_model() -> FittedModel:
    """Trained on carrier (UA late, AA on time), hour (late after 18) and weekend; fitted by the trainer's code."""
    rng = random.Random(3)
    examples = []
    for i in range(600):
        carrier, hour = rng.choice(["UA", "AA", "DL"]), float(rng.randrange(24))
        label = int(carrier == "UA" or hour > 18)
        features = {"carrier": carrier, "hour": hour, "weekend": rng.random() < 0.3}
        examples.append(labeled_example(f"c-{i}", features, label))
    estimator = Estimator("sklearn.ensemble.HistGradientBoostingClassifier", (("random_state", 0),))
    return train_challenger(examples, estimator, "classification", TrainingConfig()).challenger


def test_categories_unseen_values_missing_and_mistyped_features_are_scored_not_dead_lettered(service, registry):
    register(registry, "m", categorical_model(), promote=True)
    rows = [
        {"carrier": "UA", "hour": 9.0, "weekend": False},
        {"carrier": "AA", "hour": 9.0, "weekend": True},
        {"carrier": "ZZ", "hour": 9.0, "weekend": False},  # a carrier the version never saw
        {"carrier": "AA", "hour": None},  # missing values, one absent
        {"carrier": "AA", "hour": "late", "weekend": False, "gate": "B12"},  # a string where it saw numbers, extra
        {"carrier": 7.0, "hour": 9.0, "weekend": False},  # a number where it saw categories
    ]
    batch = [
        ScoringRequest(prediction_id=f"m-{i}", model_id="m", features=features, timestamp=START)
        for i, features in enumerate(rows)
    ]

    out = score(service, batch)

    assert out.dead == []
    assert [e.prediction_id for e in out.events] == [f"m-{i}" for i in range(6)]
    assert [e.prediction for e in out.events][:2] == [1, 0]
    assert metric(service, "retrain_scorer_mistyped_features_total", model_id="m", feature="hour") == 1
    assert metric(service, "retrain_scorer_mistyped_features_total", model_id="m", feature="carrier") == 1
    assert metric(service, "retrain_predictions_total", model_id="m") == 6
