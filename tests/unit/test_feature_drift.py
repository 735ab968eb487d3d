"""Label-free data drift on the features of the prediction stream, and detector warning zones."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from retrain.decisions.drift import DetectorSpec, DriftMonitor
from retrain.decisions.feature_drift import CategoryDetection, ChiSquare, ChiSquareSpec, FeatureDriftMonitor
from retrain.decisions.policy import ModelWatch, PolicyConfig
from retrain.schemas import PredictionEvent, RetrainReason

START = datetime(2026, 11, 28, tzinfo=UTC)
SHIFT_AT = 5_000


def features(n: int, seed: int, shift_at: int | None) -> list[dict[str, float]]:
    """Uniform [0, 10) features; from ``shift_at`` on, x0 moves to [5, 10) and x1, x2 stay."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        low = 5.0 if shift_at is not None and i >= shift_at else 0.0
        rows.append({"x0": rng.uniform(low, 10.0), "x1": rng.uniform(0, 10), "x2": rng.uniform(0, 10)})
    return rows


def categories(n: int, seed: int, shift_at: int | None, before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Categories drawn with the shares of ``before``, then of ``after`` from ``shift_at`` on."""
    rng = random.Random(seed)
    return [
        rng.choices(*zip(*(after if shift_at is not None and i >= shift_at else before).items(), strict=True))[0]
        for i in range(n)
    ]


SHARES = {"a": 70.0, "b": 20.0, "c": 10.0}


def predictions(rows: list[dict[str, Any]], version: int = 1) -> list[PredictionEvent]:
    return [
        PredictionEvent(
            prediction_id=f"p{i}",
            model_id="m",
            model_version=version,
            features=row,
            prediction=1,
            timestamp=START + timedelta(seconds=i),
        )
        for i, row in enumerate(rows)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stationary_features_raise_nothing(seed: int):
    monitor = FeatureDriftMonitor()
    changed = [c for row in features(20_000, seed, None) for c in monitor.update(row)]
    assert changed == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shifted_feature_is_detected_soon_and_alone(seed: int):
    monitor = FeatureDriftMonitor()
    changed = []
    for i, row in enumerate(features(10_000, seed, SHIFT_AT)):
        changed += [(i, name, detection) for name, detection in monitor.update(row)]
    assert changed, "the shift of x0 went unnoticed"
    first_index, first_name, first = changed[0]
    assert first_name == "x0"
    assert SHIFT_AT <= first_index < SHIFT_AT + 200
    # before: the old mean of x0 (5); after: ADWIN's window after its cut, mostly from the shifted part (7.5).
    assert first.before == pytest.approx(5.0, abs=0.5) and first.after > first.before + 1.0
    assert {name for _, name, _ in changed} == {"x0"}


def test_only_real_valued_detectors_watch_features():
    with pytest.raises(ValueError, match="0/1 error stream"):
        FeatureDriftMonitor(DetectorSpec.of("DDM"))


def test_feature_limit_bounds_the_detectors():
    monitor = FeatureDriftMonitor(max_features=2)
    monitor.update({"a": 1.0, "b": 2.0, "c": 3.0})
    assert sorted(monitor.monitors) == ["a", "b"]


def test_feature_limit_counts_features_not_detectors():
    monitor = FeatureDriftMonitor(max_features=2)
    monitor.update({"a": 1.0, "b": "x"})
    monitor.update({"a": "y", "b": 2.0, "c": 3.0, "d": "z"})  # a and b change type: each value to its own kind
    assert sorted(monitor.monitors) == ["a", "b"] and sorted(monitor.category_monitors) == ["a", "b"]
    assert monitor.watched == {"a", "b"}
    assert monitor.monitors["a"].n == 1 and monitor.category_monitors["a"].n == 1


def test_missing_values_are_skipped():
    monitor = FeatureDriftMonitor()
    monitor.update({"a": None, "b": 1.0})
    monitor.update({"a": None, "b": None})
    assert monitor.watched == {"b"} and monitor.monitors["b"].n == 1 and not monitor.category_monitors


def test_booleans_are_fed_as_0_and_1():
    rng = random.Random(5)
    flags = [rng.random() < (0.2 if i < 3_000 else 0.6) for i in range(6_000)]
    as_bool, as_float = FeatureDriftMonitor(), FeatureDriftMonitor()
    by_bool = [(i, d) for i, f in enumerate(flags) for d in [d for _, d in as_bool.update({"f": f})]]
    by_float = [(i, d) for i, f in enumerate(flags) for d in [d for _, d in as_float.update({"f": float(f)})]]
    assert by_bool == by_float and by_bool, "a boolean must be the number 0 or 1"
    assert not as_bool.category_monitors and as_bool.monitors["f"]._sum == sum(flags)


@pytest.mark.parametrize("seed", [1, 2])
def test_stationary_categories_raise_nothing(seed: int):
    chi = ChiSquare()
    assert [i for i, c in enumerate(categories(50_000, seed, None, SHARES, SHARES)) if chi.update(c)] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_a_shift_of_category_shares_is_detected_once(seed: int):
    chi = ChiSquare()
    stream = categories(10_000, seed, SHIFT_AT, SHARES, {"a": 20.0, "b": 10.0, "c": 70.0})
    found = [(i, d) for i, c in enumerate(stream) if (d := chi.update(c))]
    assert len(found) == 1, "one change, one detection (the next reference is after the change)"
    index, detection = found[0]
    # The first test past the change (tests every window / 4 = 250 values): a quarter of the window changed.
    assert index == 5_249 and SHIFT_AT <= index < SHIFT_AT + chi.window
    assert isinstance(detection, CategoryDetection) and detection.detector == "ChiSquare"
    assert detection.category == "c" and detection.rising and detection.p_value < chi.alpha
    assert detection.before == pytest.approx(0.1, abs=0.02) and detection.after == pytest.approx(0.25, abs=0.02)
    assert detection.index == index and detection.window_width == chi.window


def test_an_unseen_category_en_masse_is_detected_as_other():
    chi = ChiSquare()
    stream = categories(10_000, 3, SHIFT_AT, SHARES, {"a": 35.0, "b": 10.0, "c": 5.0, "new": 50.0})
    found = [(i, d) for i, c in enumerate(stream) if (d := chi.update(c))]
    assert [(i, d.category, d.before, d.rising) for i, d in found] == [(5_249, None, 0.0, True)]
    # "other" rose: the categories are chosen again, and now include the new one.
    assert "new" in chi._codes


def test_state_is_bounded_whatever_the_cardinality():
    chi = ChiSquare()
    largest = pickled = 0
    for i in range(30_000):
        chi.update(f"category-{i % 10_000:05d}-" + "x" * 200)  # 10,000 distinct categories of 215 characters
        largest = max(largest, chi.state_size())
        if i % 250 == 0:
            pickled = max(pickled, len(pickle.dumps(chi)))
    assert largest <= 2 * chi.categories + chi.window + 2 * (chi.categories + 1)
    assert pickled < 20_000  # at most 2 x 32 categories of 215 characters, and the window's bytes
    assert chi._codes == {}  # none seen 5 times in a window: all are "other", and "other" alone is not tested


def mixed_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """A numeric feature shifting at SHIFT_AT, a category shifting at 7,000, a feature that turns into strings."""
    rng = random.Random(seed)
    colours = categories(n, seed, 7_000, SHARES, {"a": 20.0, "b": 10.0, "c": 70.0})
    return [
        {
            "x": rng.uniform(5.0 if i >= SHIFT_AT else 0.0, 10.0),
            "colour": colours[i],
            "v": rng.random() if i < 3_000 else rng.choice(["p", "q"]),
            "m": None if i % 3 else True,
        }
        for i in range(n)
    ]


def test_a_restored_monitor_carries_on_identically():
    rows = mixed_rows(12_000, 6)
    straight = FeatureDriftMonitor()
    expected = [(i, name, d) for i, row in enumerate(rows) for name, d in straight.update(row)]
    assert [(i, name, d.detector) for i, name, d in expected] == [(5_055, "x", "ADWIN"), (7_249, "colour", "ChiSquare")]
    assert (straight.monitors["v"].n, straight.category_monitors["v"].n, straight.monitors["m"].n) == (
        3_000,
        9_000,
        4_000,
    )
    restored, found = FeatureDriftMonitor(), []
    for i, row in enumerate(rows):
        if i in (500, 1_500, 4_000, 5_100, 7_100):  # choosing, reference, monitoring, mid-ADWIN, mid-shift
            restored = pickle.loads(pickle.dumps(restored))
        found += [(i, name, d) for name, d in restored.update(row)]
    assert found == expected


def test_a_monitor_pickled_before_categories_still_works():
    rows = features(12_000, 1, None)
    old = FeatureDriftMonitor()
    for row in rows[:2_000]:
        old.update(row)
    # What a snapshot written before categories holds: numeric detectors only.
    old.__dict__ = {key: old.__dict__[key] for key in ("spec", "max_features", "monitors")}
    monitor = pickle.loads(pickle.dumps(old))
    assert monitor.watched == {"x0", "x1", "x2"} and monitor.categorical == ChiSquareSpec()
    colours = categories(10_000, 1, SHIFT_AT, SHARES, {"a": 20.0, "b": 10.0, "c": 70.0})
    found = [
        (i, name)
        for i, (row, colour) in enumerate(zip(rows[2_000:], colours, strict=True))
        for name, _ in monitor.update({**row, "colour": colour})
    ]
    assert found == [(5_249, "colour")]
    assert monitor.monitors["x0"].n == 12_000


def test_model_watch_asks_for_one_retrain_on_a_feature_shift():
    config = PolicyConfig(feature_detector=DetectorSpec.of("ADWIN"), cooldown_s=10**9)
    watch = ModelWatch("m", config, version=1)
    events = [
        (i, e) for i, p in enumerate(predictions(features(10_000, 4, SHIFT_AT))) if (e := watch.observe_prediction(p))
    ]
    assert len(events) == 1
    index, event = events[0]
    assert SHIFT_AT <= index < SHIFT_AT + 200
    assert event.reason is RetrainReason.DRIFT and event.detector == "ADWIN[x0]"
    assert event.evidence.metric == "feature_mean:x0"
    assert event.suggested_window is not None and event.suggested_window.last_n >= 1


@pytest.mark.parametrize(
    ("after", "metric"),
    [
        ({"a": 20.0, "b": 10.0, "c": 70.0}, "category_share:colour=c"),
        ({"a": 35.0, "b": 10.0, "c": 5.0, "new": 50.0}, "category_share:colour=<other>"),
        ({"a": 20.0, "b": 10.0, "line\nbreak": 70.0}, "category_share:colour=line?break"),
    ],
)
def test_model_watch_names_the_category_that_moved(after: dict[str, float], metric: str):
    before = {"a": 70.0, "b": 20.0, "line\nbreak": 10.0} if "line\nbreak" in after else SHARES
    colours = categories(10_000, 8, SHIFT_AT, before, after)
    rows = [{**row, "colour": colour} for row, colour in zip(features(10_000, 4, None), colours, strict=True)]
    config = PolicyConfig(feature_detector=DetectorSpec.of("ADWIN"), cooldown_s=10**9)
    watch = ModelWatch("m", config, version=1)
    events = [(i, e) for i, p in enumerate(predictions(rows)) if (e := watch.observe_prediction(p))]
    assert [i for i, _ in events] == [5_249]
    event = events[0][1]
    assert event.reason is RetrainReason.DRIFT and event.detector == "ChiSquare[colour]"
    assert event.evidence.metric == metric and event.evidence.detectors == ["ChiSquare[colour]"]
    assert event.evidence.after > event.evidence.before and event.evidence.values["p_value"] < 1e-5
    assert event.suggested_window is not None and event.suggested_window.last_n == 1_000


def test_without_a_feature_detector_predictions_are_not_watched():
    watch = ModelWatch("m", PolicyConfig(), version=1)
    assert all(watch.observe_prediction(p) is None for p in predictions(features(6_000, 4, 1_000)))
    assert watch.features is None


def test_ddm_enters_its_warning_zone_before_it_detects():
    rng = random.Random(3)
    monitor = DriftMonitor((DetectorSpec.of("DDM"),))
    first_warning = first_drift = None
    for i in range(4_000):
        rate = 0.1 if i < 2_000 else 0.4
        detections = monitor.update(1.0 if rng.random() < rate else 0.0)
        if monitor.warnings and first_warning is None and i >= 2_000:
            first_warning = i
        if detections and first_drift is None and i >= 2_000:
            first_drift = i
    assert first_warning is not None and first_drift is not None
    assert 2_000 <= first_warning <= first_drift
