"""Training decisions: the buffer, the window, the holdout, the promotion rule and failures as outcomes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from retrain.decisions.training import (
    ExampleBuffer,
    TrainingConfig,
    TrainingFailure,
    choose_window,
    estimator_factory,
    should_promote,
    split_holdout,
    train_challenger,
)
from schemas import LabeledExample, RetrainEvent, RetrainReason, TrainingWindow

START = datetime(2026, 11, 28, tzinfo=UTC)
CONFIG = TrainingConfig(
    min_window=100, max_window=1_000, default_window=500, holdout_fraction=0.2, min_holdout=20, min_train=50
)


def examples(n: int, *, threshold: float = 0.5, seed: int = 0, start: int = 0) -> list[LabeledExample]:
    """x uniform in [0, 1); label 1 when x > threshold (the concept moves with the threshold)."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        x = rng.random()
        out.append(
            LabeledExample(
                prediction_id=f"p{i}",
                model_id="m",
                model_version=1,
                features={"x": x, "noise": rng.random()},
                prediction=0,
                label=int(x > threshold),
                prediction_timestamp=START + timedelta(seconds=i),
                label_timestamp=START + timedelta(seconds=i + 1),
            )
        )
    return out


def event(window: TrainingWindow | None) -> RetrainEvent:
    return RetrainEvent(model_id="m", reason=RetrainReason.DRIFT, suggested_window=window)


def test_buffer_is_bounded_by_count_and_age_and_ignores_redelivery():
    buffer = ExampleBuffer(max_examples=100, max_age_s=50)
    data = examples(300)
    assert all(buffer.add(e) for e in data[:40])
    assert buffer.add(data[0]) is False  # the same prediction again
    assert len(buffer) == 40
    for e in data[40:]:
        buffer.add(e)
    kept = buffer.examples()
    # age bound: label times within 50 s of the newest (299 + 1): 250..300 -> examples 249..299
    assert [e.prediction_id for e in kept] == [f"p{i}" for i in range(249, 300)]
    count_only = ExampleBuffer(max_examples=100, max_age_s=10**9)
    for e in data:
        count_only.add(e)
    assert [e.prediction_id for e in count_only.examples()] == [f"p{i}" for i in range(200, 300)]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, 500),  # no event window: the latest default_window
        (TrainingWindow(last_n=300), 300),
        (TrainingWindow(last_n=10), 100),  # clamped up to min_window
        (TrainingWindow(last_n=5_000), 1_000),  # clamped down to max_window
    ],
)
def test_window_is_the_suggestion_clamped(window, expected):
    data = examples(2_000)
    chosen = choose_window(data, event(window), CONFIG)
    assert len(chosen) == expected
    assert chosen == data[-expected:]  # always the most recent ones


def test_window_by_time_range():
    data = examples(2_000)
    window = TrainingWindow(start=START + timedelta(seconds=1_001), end=START + timedelta(seconds=1_400))
    chosen = choose_window(data, event(window), CONFIG)
    assert [e.prediction_id for e in chosen] == [f"p{i}" for i in range(1_000, 1_400)]


def test_holdout_is_the_most_recent_slice():
    data = examples(500)
    train, holdout = split_holdout(data, CONFIG)
    assert train == data[:400] and holdout == data[400:]
    with pytest.raises(TrainingFailure) as failure:
        split_holdout(data[:60], CONFIG)
    assert failure.value.reason == "too_few_examples"


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "promote"),
    [
        (0.80, None, 0.0, True),
        (0.80, 0.80, 0.0, True),
        (0.79, 0.80, 0.0, False),
        (0.79, 0.80, 0.02, True),
        (0.77, 0.80, 0.02, False),
    ],
)
def test_promotion_rule(challenger, champion, tolerance, promote):
    assert should_promote(challenger, champion, tolerance) is promote


def test_challenger_on_the_new_concept_beats_the_old_champion():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3, "random_state": 0})
    old = train_challenger(examples(800, threshold=0.3, seed=1), tree, "classification", CONFIG)
    assert old.promote and old.champion_score is None and old.challenger_score > 0.95
    new_data = examples(800, threshold=0.7, seed=2, start=800)
    outcome = train_challenger(new_data, tree, "classification", CONFIG, champion=old.challenger)
    assert outcome.challenger_score > 0.95
    assert outcome.champion_score is not None and outcome.champion_score < 0.8  # x in (0.3, 0.7] is now 0
    assert outcome.promote
    assert outcome.n_train == 640 and outcome.n_holdout == 160
    assert outcome.challenger.feature_names == ["noise", "x"]


def test_single_class_and_estimator_errors_are_failures_not_crashes():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier")
    with pytest.raises(TrainingFailure) as single:
        train_challenger(examples(400, threshold=2.0), tree, "classification", CONFIG)
    assert single.value.reason == "single_class"

    def broken():
        raise RuntimeError("out of memory, pretend")

    with pytest.raises(TrainingFailure) as raised:
        train_challenger(examples(400), broken, "classification", CONFIG)
    assert raised.value.reason == "estimator_error" and "pretend" in str(raised.value)


def test_estimator_specs():
    assert type(estimator_factory("sklearn.linear_model.LogisticRegression")()).__name__ == "LogisticRegression"
    pipeline = estimator_factory("sklearn.pipeline:make_pipeline", None)
    with pytest.raises(ValueError, match="cannot import"):
        estimator_factory("sklearn.nothing.Here")
    with pytest.raises(ValueError, match="must look like"):
        estimator_factory("RandomForest")
    assert callable(pipeline)
