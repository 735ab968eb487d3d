"""Training decisions: the buffer, the window, the holdout, the promotion rule and failures as outcomes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from retrain.decisions.episode import STALE
from retrain.decisions.training import (
    ExampleBuffer,
    TrainingConfig,
    TrainingFailure,
    better_p_value,
    choose_window,
    estimator_factory,
    needs_evidence,
    rejection,
    should_promote,
    split_holdout,
    train_challenger,
)
from retrain.schemas import Evidence, LabeledExample, RetrainEvent, RetrainReason, TrainingWindow

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


@pytest.mark.parametrize(
    ("challenger", "champion", "p_value"),
    [
        ([0] * 10, [1] * 10, 2**-10),  # 10 wins of 10 differing: P(X >= 10) for Binomial(10, 1/2)
        ([0, 1, 0, 0], [1, 0, 0, 0], 0.75),  # 1 win, 1 loss: P(X >= 1) for Binomial(2, 1/2)
        ([0] * 60 + [1] * 40, [1] * 60 + [0] * 40, 0.028443966820490444),  # 60 of 100 (scipy's binomtest)
        ([0.5, 0.5], [0.5, 0.5], 1.0),  # never differ: no evidence
        ([1.0, 2.0, 3.0], [1.5, 2.5, 2.0], 0.5),  # regression: 2 wins of 3 on the absolute error
    ],
)
def test_the_paired_test_is_the_exact_one_sided_sign_test(challenger, champion, p_value):
    assert better_p_value(challenger, champion) == pytest.approx(p_value, rel=1e-9)


def stale(value: float | None) -> RetrainEvent:
    values = {} if value is None else {STALE: value}
    return RetrainEvent(model_id="m", reason=RetrainReason.DATA_VOLUME, evidence=Evidence(values=values))


def test_only_an_event_that_presumes_the_champion_good_asks_for_evidence():
    assert [needs_evidence(e) for e in (stale(0.0), stale(1.0), stale(None), None)] == [True, False, False, False]


def test_a_challenger_that_only_ties_replaces_a_stale_champion_but_not_one_presumed_good():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3, "random_state": 0})
    champion = train_challenger(examples(800, seed=1), tree, "classification", CONFIG).challenger
    same_concept = examples(800, seed=2, start=800)

    trusted = train_challenger(same_concept, tree, "classification", CONFIG, champion=champion)
    asked = train_challenger(same_concept, tree, "classification", CONFIG, champion=champion, evidence=True)

    assert trusted.challenger_score >= trusted.champion_score  # a tie or a lucky holdout: promoted
    assert trusted.promote and trusted.p_value is None
    assert (asked.challenger_score, asked.champion_score) == (trusted.challenger_score, trusted.champion_score)
    assert asked.p_value is not None and asked.p_value > CONFIG.evidence_alpha and not asked.promote
    assert asked.metrics["promotion_p_value"] == asked.p_value


def test_a_challenger_clearly_better_than_a_champion_presumed_good_is_promoted():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3, "random_state": 0})
    old = train_challenger(examples(800, threshold=0.3, seed=1), tree, "classification", CONFIG).challenger
    new_data = examples(800, threshold=0.7, seed=2, start=800)
    outcome = train_challenger(new_data, tree, "classification", CONFIG, champion=old, evidence=True)
    assert outcome.p_value is not None and outcome.p_value < 1e-9
    assert outcome.promote


def test_a_long_window_also_fits_its_recent_part_and_the_holdout_chooses():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3, "random_state": 0})
    config = TrainingConfig(min_window=100, max_window=5_000, default_window=400, holdout_fraction=0.2, min_holdout=20)
    stable = examples(1_500, threshold=0.5, seed=4)
    drifted = examples(1_000, threshold=0.2, seed=5) + examples(1_000, threshold=0.8, seed=6, start=1_000)

    on_stable = train_challenger(stable, tree, "classification", config)
    on_drifted = train_challenger(drifted, tree, "classification", config)

    assert on_stable.n_train == 1_200  # all of the training part: the same concept throughout
    assert on_drifted.n_train == 400  # its latest 400: the concept of the holdout
    assert on_drifted.challenger_score > 0.95


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


def test_variants_are_fitted_on_the_same_window_and_the_holdout_chooses():
    """Depth 1 cannot draw a band; the variant without a depth limit can, and wins on the holdout."""
    rng = random.Random(7)
    band = [
        e.model_copy(update={"label": int(0.3 < e.features["x"] <= 0.7)}) for e in examples(800, seed=rng.randrange(9))
    ]
    stump = estimator_factory(
        "sklearn.tree.DecisionTreeClassifier", {"max_depth": 1, "random_state": 0}, [{"max_depth": None}]
    )
    outcome = train_challenger(band, stump, "classification", CONFIG)
    assert outcome.variant == 1 and outcome.metrics["estimator_variant"] == 1.0
    assert outcome.challenger.estimator.get_params()["max_depth"] is None
    assert outcome.challenger_score > 0.95

    alone = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 1, "random_state": 0})
    without = train_challenger(band, alone, "classification", CONFIG)
    assert without.variant is None and "estimator_variant" not in without.metrics
    assert without.challenger_score < 0.8  # one threshold gets one side of the band wrong


def test_a_tie_keeps_the_estimators_own_parameters():
    tree = estimator_factory("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3}, [{"max_depth": 4}])
    outcome = train_challenger(examples(800, seed=3), tree, "classification", CONFIG)
    assert outcome.challenger_score == 1.0  # one threshold: both depths are perfect on the holdout
    assert outcome.variant == 0 and outcome.challenger.estimator.get_params()["max_depth"] == 3


def test_variants_that_change_nothing_are_dropped_and_unknown_parameters_refused():
    tree = estimator_factory(
        "sklearn.tree.DecisionTreeClassifier", {"max_depth": 3}, [{"max_depth": 3}, {"max_depth": 5}, {}]
    )
    assert [dict(a.params) for a in tree.alternatives()] == [{"max_depth": 3}, {"max_depth": 5}]
    with pytest.raises(ValueError, match="max_leaves"):
        estimator_factory("sklearn.tree.DecisionTreeClassifier", {}, [{"max_leaves": 4}])


def test_the_classifier_variants_come_from_the_settings():
    from retrain.configure import estimator_choice
    from retrain.settings import TrainerSettings

    def alternatives(**settings: str) -> list[dict]:
        choice = estimator_choice(TrainerSettings(**settings))("m", "classification")
        return [dict(a.params) for a in choice.alternatives()]

    auto = {"early_stopping": True, "random_state": 0}
    assert alternatives() == [auto, {**auto, "max_leaf_nodes": 15}]
    assert alternatives(estimator_variants="[]") == [auto]
    tree = {"estimator": "sklearn.tree.DecisionTreeClassifier", "estimator_params": '{"max_depth": 3}'}
    assert alternatives(**tree) == [{"max_depth": 3}]  # auto: HistGradientBoosting only
    assert alternatives(**tree, estimator_variants='[{"max_depth": 6}]') == [{"max_depth": 3}, {"max_depth": 6}]
    regressor = estimator_choice(TrainerSettings())("m", "regression")
    assert len(regressor.alternatives()) == 1
    with pytest.raises(ValueError, match="JSON list of objects"):
        alternatives(estimator_variants='{"max_depth": 6}')


class BucketMajority:
    """Predicts the (weighted) majority label of x's tenth seen in training, else of all training examples."""

    def fit(self, X, y, sample_weight=None):
        weights = [1.0] * len(y) if sample_weight is None else list(sample_weight)
        votes: dict[int, dict[int, float]] = {}
        overall: dict[int, float] = {}
        for row, label, weight in zip(X, y, weights, strict=True):
            bucket = votes.setdefault(int(row[0] * 10), {})
            bucket[label] = bucket.get(label, 0.0) + weight
            overall[label] = overall.get(label, 0.0) + weight
        self.majority = {b: max(v, key=v.get) for b, v in votes.items()}
        self.fallback = max(overall, key=overall.get)
        return self

    def predict(self, X):
        return [self.majority.get(int(row[0] * 10), self.fallback) for row in X]


class UnweightedBucketMajority(BucketMajority):
    def fit(self, X, y):
        return super().fit(X, y)


def bucketed(buckets: list[int], start: int, flipped: bool) -> list[LabeledExample]:
    """One example per bucket in order; label 1 from x = 0.5 on, and also below 0.1 once the concept ``flipped``."""
    return [
        LabeledExample(
            prediction_id=f"b{start + i}",
            model_id="m",
            model_version=1,
            features={"x": (bucket + 0.5) / 10},
            prediction=0,
            label=int(bucket >= 5 or (flipped and bucket == 0)),
            prediction_timestamp=START + timedelta(seconds=start + i),
            label_timestamp=START + timedelta(seconds=start + i + 1),
        )
        for i, bucket in enumerate(buckets)
    ]


def test_a_window_since_a_change_also_fits_the_wider_window_with_its_examples_weighted():
    """Only x < 0.1 changed, and the examples since the change cover x < 0.5 (the holdout covers all of x): alone
    they miss x >= 0.5, unweighted the older examples outvote them below 0.1 (75 to 40), weighted 4 times they
    do not (160 to 75)."""
    before = bucketed([i % 10 for i in range(750)], 0, flipped=False)
    since = bucketed([i % 5 for i in range(200)], 750, flipped=True) + bucketed(list(range(10)) * 5, 950, True)
    config = TrainingConfig(min_window=1, default_window=1_000, min_holdout=50, change_weight=4.0)

    outcome = train_challenger(since, BucketMajority, "classification", config, wider=before + since)
    assert outcome.change_weighted is True and outcome.metrics["change_weighted"] == 1.0
    assert (outcome.challenger_score, outcome.n_train, outcome.n_holdout) == (1.0, 950, 50)

    off = TrainingConfig(min_window=1, default_window=1_000, min_holdout=50, change_weight=1.0)
    unweighted = train_challenger(since, BucketMajority, "classification", off, wider=before + since)
    assert unweighted.change_weighted is None and "change_weighted" not in unweighted.metrics
    assert (unweighted.challenger_score, unweighted.n_train) == (0.9, 950)  # the 5 holdout examples below 0.1 wrong
    alone = train_challenger(since, BucketMajority, "classification", off)
    assert (alone.challenger_score, alone.n_train) == (0.5, 200)  # x >= 0.5 never seen: all predicted 0

    cannot = train_challenger(since, UnweightedBucketMajority, "classification", config, wider=before + since)
    assert cannot.change_weighted is None and cannot.challenger_score == 0.9  # its fit takes no sample_weight


def test_the_change_weight_is_at_least_one():
    with pytest.raises(ValueError, match="change_weight"):
        TrainingConfig(change_weight=0.5)
    from retrain.configure import training_config
    from retrain.settings import TrainerSettings

    assert training_config(TrainerSettings()).change_weight == 3.0
    assert training_config(TrainerSettings(change_weight=1)).change_weight == 1.0


def test_the_paired_test_is_adjusted_for_the_number_of_fits_the_holdout_chose_among():
    """The champion predates a change below x = 0.1: on the 50 holdout examples the challenger wins the 5 below 0.1
    and ties the rest, a sign test p of 2**-5. One fit passes at 0.05; the best of three fits (the window, the wider
    window, the wider window weighted) needs p * 3 <= 0.05 and does not."""
    config = TrainingConfig(min_window=1, default_window=1_000, min_holdout=50, change_weight=4.0)
    before = bucketed([i % 10 for i in range(750)], 0, flipped=False)
    champion = train_challenger(before, BucketMajority, "classification", config).challenger
    since = bucketed(list(range(10)) * 25, 750, flipped=True)

    one = train_challenger(since, BucketMajority, "classification", config, champion, evidence=True)
    three = train_challenger(since, BucketMajority, "classification", config, champion, before + since, evidence=True)

    assert (one.challenger_score, one.champion_score, one.n_holdout) == (1.0, 0.9, 50)
    assert (one.fits, one.p_value, one.promote) == (1, 2**-5, True)
    assert (three.challenger_score, three.champion_score, three.n_train) == (1.0, 0.9, 200)  # the window's own fit
    assert (three.fits, three.p_value, three.promote) == (3, 3 * 2**-5, False)
    assert three.metrics["promotion_p_value"] == 3 * 2**-5 and three.metrics["promotion_fits"] == 3.0
    assert "p=0.0938 > 0.05, adjusted for the best of 3 fits" in rejection(three, config)
