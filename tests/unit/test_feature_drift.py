"""Label-free data drift on the features of the prediction stream, and detector warning zones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from retrain.decisions.drift import DetectorSpec, DriftMonitor
from retrain.decisions.feature_drift import FeatureDriftMonitor
from retrain.decisions.policy import ModelWatch, PolicyConfig
from schemas import PredictionEvent, RetrainReason

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


def predictions(rows: list[dict[str, float]], version: int = 1) -> list[PredictionEvent]:
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
