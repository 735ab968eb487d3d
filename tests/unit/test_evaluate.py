"""retrain evaluate: detection scoring, the gain, and the strategies run by the services' decision code."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from retrain import evaluate, simulation
from retrain.decisions.policy import PolicyConfig
from retrain.decisions.training import TrainingConfig, estimator_factory
from retrain.producers.replay import parse_label_delay
from retrain.producers.streams import GeneratorSource


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
    assert simulation.score_detections(detections, points) == expected


def result(name: str, correct: list[int]) -> simulation.StrategyResult:
    return simulation.StrategyResult(name, bytearray(correct), warmup=0)


def test_gain_is_the_share_of_the_oracles_improvement_over_static():
    results = {
        "static": result("static", [1, 0, 0, 0]),
        "default": result("default", [1, 1, 0, 0]),
        "oracle": result("oracle", [1, 1, 1, 0]),
    }
    assert evaluate.gain(results) == pytest.approx(0.5)
    assert evaluate.gain({"static": results["static"], "default": results["default"]}) is None


def test_accuracy_counts_after_the_warmup_only():
    assert simulation.StrategyResult("x", bytearray([0, 0, 1, 1, 1, 0]), warmup=2).accuracy == pytest.approx(0.75)


SOURCE = GeneratorSource("stagger", (0, 2), (3_000,), 6_000, seed=3)
TRAINER = simulation.TrainerSetup(
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
    again = simulation.simulate(
        list(SOURCE), simulation.Strategy("default", POLICY), TRAINER, initial=1_000, drift_points=SOURCE.drift_points
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


# -- labels that come late ----------------------------------------------------------------------------------


def scheduled() -> simulation.Strategy:
    chosen = evaluate.strategies(POLICY, scheduled_every=1_000, detectors=[])
    return next(s for s in chosen if s.name == "scheduled")


def run_with(labels: simulation.LabelArrivals | None, strategy: simulation.Strategy, seen: list | None = None):
    return simulation.simulate(
        list(SOURCE),
        strategy,
        TRAINER,
        initial=1_000,
        drift_points=SOURCE.drift_points,
        labels=labels,
        on_example=None if seen is None else seen.append,
    )


def test_labels_at_once_decide_exactly_as_without_a_delay(results):
    at_once = simulation.LabelArrivals(list(SOURCE), parse_label_delay("0"), "examples")
    again = run_with(at_once, simulation.Strategy("default", POLICY))
    assert again.correct == results["default"].correct
    assert (again.detections, again.swaps, again.retrains) == (
        results["default"].detections,
        results["default"].swaps,
        results["default"].retrains,
    )


@pytest.mark.parametrize(
    ("spec", "unit", "seen_labels"),
    [
        ("fixed:250", "examples", 5_750),  # the last one seen as the last example is served
        ("fixed:2.505", "seconds", 5_749),  # the last one's time (59.995 s) is after the last example's (59.99 s)
    ],
)
def test_a_fixed_delay_moves_every_scheduled_swap_by_the_delay(spec: str, unit: str, seen_labels: int):
    """Scheduled retraining counts the labels of the version in service. With labels 250 examples (2.505 s at 10 ms
    apart) late, the first version serves from 1,250 instead of 1,000, and each next one 1,250 examples after the
    last: its 1,000 labels start coming 250 examples after it started serving. Labels due after the stream's end
    never arrive."""
    plain = run_with(None, scheduled())
    seen: list = []
    late = run_with(simulation.LabelArrivals(list(SOURCE), parse_label_delay(spec), unit), scheduled(), seen)  # type: ignore[arg-type]
    assert plain.swaps == [1_000, 2_000, 3_000, 4_000, 5_000, 6_000][: len(plain.swaps)]
    assert late.swaps == [1_250, 2_500, 3_750, 5_000]
    assert len(seen) == seen_labels and len(late.correct) == 6_000  # every prediction served is scored
    assert [e.prediction_id for e in seen[:3]] == ["evaluated-0", "evaluated-1", "evaluated-2"]
    gap = timedelta(seconds=2.5 if unit == "examples" else 2.505)  # seen 250 examples of 10 ms later, or at +2.505 s
    assert all(e.label_timestamp - e.prediction_timestamp == gap for e in seen)
    assert late.accuracy < plain.accuracy  # older versions serve longer after the switch


def test_random_delays_repeat_and_reorder_the_labels():
    labels = simulation.LabelArrivals(list(SOURCE), parse_label_delay("exp:100"), "examples", seed=5)
    seen: list = []
    first = run_with(labels, simulation.Strategy("default", POLICY), seen)
    again = run_with(labels, simulation.Strategy("default", POLICY))
    assert first.correct == again.correct and first.swaps == again.swaps
    order = [int(e.prediction_id.rsplit("-", 1)[1]) for e in seen]
    assert order != sorted(order) and len(set(order)) == len(order)
    versions = {e.model_version for e in seen}
    assert versions == set(range(first.promotions + 1)) - ({first.promotions} if first.swaps[-1] > 6_000 else set())


# -- regression -----------------------------------------------------------------------------------------------


REGRESSION = GeneratorSource("friedman", (0, 1), (3_000,), 6_000, seed=3)
REGRESSOR = simulation.TrainerSetup(
    TrainingConfig(max_window=1_000, default_window=1_000),
    estimator_factory("sklearn.tree.DecisionTreeRegressor", {"random_state": 0, "max_depth": 8}),
)


@pytest.fixture(scope="module")
def regression_results():
    chosen = evaluate.strategies(
        replace(POLICY, task="regression"), scheduled_every=1_000, drift_points=REGRESSION.drift_points, detectors=[]
    )
    return evaluate.run(
        list(REGRESSION), chosen, REGRESSOR, task="regression", drift_points=REGRESSION.drift_points, initial=1_000
    )


def test_a_regression_stream_is_scored_by_its_mean_absolute_error(regression_results):
    static, default, oracle = (regression_results[n] for n in ("static", "default", "oracle"))
    assert list(regression_results) == ["static", "scheduled", "threshold", "default", "oracle"]
    assert all(r.task == "regression" and len(r.absolute_errors) == 6_000 and not r.correct for r in (static, default))
    assert static.mae == pytest.approx(sum(static.absolute_errors[1_000:]) / 5_000)
    assert default.detections and 3_000 <= default.detections[0] < 3_200 and default.false_alarms == 0
    assert default.mae < static.mae and oracle.mae < static.mae
    assert evaluate.gain(regression_results) == pytest.approx((static.mae - default.mae) / (static.mae - oracle.mae))
    assert evaluate.gain(regression_results) > 0.9
    assert set(evaluate.report(regression_results)["strategies"]["default"]) >= {"mae", "retrains"}
    assert evaluate.table(regression_results).split()[1] == "mae"


def test_a_friedman_concept_reads_other_features():
    first = next(iter(GeneratorSource("friedman", (0,), (), 1, seed=9)))
    swapped = next(iter(GeneratorSource("friedman", (1,), (), 1, seed=9)))
    assert first.target == swapped.target  # the same draw: only the names moved
    assert [swapped.features[str(i)] for i in (5, 6, 7, 8, 9, 0, 1, 2, 3, 4)] == [
        first.features[str(i)] for i in range(10)
    ]


def test_the_command_runs_the_chosen_strategies_with_its_label_delay_and_writes_them(tmp_path, capsys):
    """`retrain evaluate` end to end: the stream, the strategies and the label delay come from the options."""
    from retrain.cli import build_parser
    from retrain.settings import load_settings

    def main(argv: list[str]) -> int:
        args = build_parser().parse_args(argv)
        return args.handler(args, load_settings())

    stream = ["evaluate", "--generator", "stagger", "--concepts", "0,2", "--drift-points", "3000"]
    stream += ["--examples", "6000", "--initial", "1000", "--strategies", "static,default"]
    figures = {}
    for delay in ("0", "fixed:300"):
        out = tmp_path / f"{delay}.json"
        assert main([*stream, "--label-delay", delay, "--json", str(out)]) == 0
        figures[delay] = json.loads(out.read_text())["strategies"]
    assert set(figures["0"]) == set(figures["fixed:300"]) == {"static", "default"}
    at_once, late = figures["0"]["default"], figures["fixed:300"]["default"]
    assert at_once["accuracy"] > figures["0"]["static"]["accuracy"] + 0.1  # the switch is found and retrained for
    # 300 examples late, the switch is seen (and retrained for) 300 examples later: fewer correct predictions.
    assert late["detections"][0] >= at_once["detections"][0] + 300 and late["accuracy"] < at_once["accuracy"]
    capsys.readouterr()
    assert main([*stream, "--strategies", "static,nope"]) == 2
    assert "unknown strategies ['nope']" in capsys.readouterr().err
