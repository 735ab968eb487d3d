"""retrain evaluate: detection scoring, the gain, and the strategies run by the services' decision code."""

from __future__ import annotations

from dataclasses import replace

import pytest

from producers.streams import GeneratorSource
from retrain import evaluate
from retrain.decisions.policy import PolicyConfig
from retrain.decisions.training import TrainingConfig, estimator_factory


@pytest.mark.parametrize(
    ("detections", "points", "expected"),
    [
        ([], [], ([], 0, 0)),
        ([120, 5_050], [100, 5_000], ([20, 50], 0, 0)),
        ([50, 120, 130], [100], ([20], 2, 0)),  # one before any drift, one repeat in the same segment
        ([5_010], [100, 5_000], ([10], 0, 1)),  # the first drift was missed
        ([7], [], ([], 0, 0)),  # nothing to score without drift points
    ],
)
def test_score_detections(detections, points, expected):
    assert evaluate.score_detections(detections, points) == expected


def result(name: str, correct: list[int]) -> evaluate.StrategyResult:
    return evaluate.StrategyResult(name, bytearray(correct), warmup=0)


def test_gain_is_the_share_of_the_oracles_improvement_over_static():
    results = {
        "static": result("static", [1, 0, 0, 0]),
        "default": result("default", [1, 1, 0, 0]),
        "oracle": result("oracle", [1, 1, 1, 0]),
    }
    assert evaluate.gain(results) == pytest.approx(0.5)
    assert evaluate.gain({"static": results["static"], "default": results["default"]}) is None


def test_accuracy_counts_after_the_warmup_only():
    assert evaluate.StrategyResult("x", bytearray([0, 0, 1, 1, 1, 0]), warmup=2).accuracy == pytest.approx(0.75)


SOURCE = GeneratorSource("stagger", (0, 2), (3_000,), 6_000, seed=3)
TRAINER = evaluate.TrainerSetup(
    TrainingConfig(max_window=1_000, default_window=1_000),
    estimator_factory("sklearn.tree.DecisionTreeClassifier", {"random_state": 0}),
)
POLICY = PolicyConfig(refit_first=500, refit_until=1_000, refit_growth=2.0)


@pytest.fixture(scope="module")
def results():
    examples = list(SOURCE)
    chosen = evaluate.strategies(POLICY, scheduled_every=1_000, drift_points=SOURCE.drift_points, detectors=["ADWIN"])
    return evaluate.run(examples, chosen, TRAINER, drift_points=SOURCE.drift_points, initial=1_000)


def test_strategies_are_the_baselines_each_detector_the_default_and_the_oracle(results):
    assert list(results) == ["static", "scheduled", "threshold", "ADWIN", "default", "oracle"]


def test_static_never_retrains_and_scheduled_retrains_every_n(results):
    assert results["static"].retrains == 0 and results["static"].promotions == 1
    assert results["scheduled"].retrains == 5  # after 2,000 ... 6,000 examples (the first model after 1,000)


def test_the_default_detects_the_switch_soon_and_recovers_like_the_oracle(results):
    default, oracle, static = results["default"], results["oracle"], results["static"]
    assert len(default.detection_delays) == 1 and 0 < default.detection_delays[0] < 200
    assert default.false_alarms == 0 and default.missed == 0
    assert oracle.detections == [3_000] and oracle.detection_delays == [0]
    assert static.accuracy < default.accuracy <= oracle.accuracy + 0.01
    assert evaluate.gain(results) > 0.9


def test_the_same_stream_and_settings_give_the_same_figures(results):
    again = evaluate.simulate(
        list(SOURCE), evaluate.Strategy("default", POLICY), TRAINER, initial=1_000, drift_points=SOURCE.drift_points
    )
    assert again.correct == results["default"].correct and again.detections == results["default"].detections


def test_report_has_the_documented_shape(results):
    document = evaluate.report(results)
    assert set(document["strategies"]) == set(results)
    for figures in document["strategies"].values():
        assert {"accuracy", "retrains", "detection_delays", "false_alarms"} <= set(figures)
    assert document["gain"] == pytest.approx(evaluate.gain(results), abs=1e-6)


def test_a_naive_policy_reports_its_events_as_detections(results):
    threshold = results["threshold"]
    assert len(threshold.detections) == threshold.retrains
    assert replace(POLICY, post_change_training=False).post_change_training is False
