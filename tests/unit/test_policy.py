"""ModelWatch: when a model's labeled examples call for a retrain (drift, performance, data volume)."""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, timedelta

import pytest

from retrain.decisions.drift import DetectorSpec
from retrain.decisions.policy import ModelWatch, PolicyConfig, example_error
from schemas import LabeledExample, RetrainEvent, RetrainReason, StreamPosition

T0 = datetime(2024, 6, 1, tzinfo=UTC)
SEED = 1
QUIET = {"cooldown_s": 10**9, "cooldown_examples": 10**9}  # one event, then silence


# -- example_error ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        (1, 1, 0.0),
        (0, 1, 1.0),
        (True, True, 0.0),
        (False, True, 1.0),
        ("cat", "cat", 0.0),
        ("cat", "dog", 1.0),
        (1, True, 1.0),  # an int is not a bool: the producer sent the wrong type
        (True, 1, 1.0),
        ("1", 1, 1.0),
        (1, "1", 1.0),
    ],
)
def test_classification_error_is_zero_only_for_the_same_value_and_type(prediction, label, expected):
    assert example_error(prediction, label, "classification") == expected


@pytest.mark.parametrize(
    ("prediction", "label", "expected"), [(2.5, 1.0, 1.5), (1.0, 2.5, 1.5), (3, 3.0, 0.0), (-2, 4, 6.0)]
)
def test_regression_error_is_the_absolute_error(prediction, label, expected):
    assert example_error(prediction, label, "regression") == pytest.approx(expected)


@pytest.mark.parametrize(("prediction", "label"), [("2.5", 1.0), (2.5, "high"), ("a", "b")])
def test_regression_refuses_a_string(prediction, label):
    with pytest.raises(ValueError):
        example_error(prediction, label, "regression")


# -- streams ------------------------------------------------------------------------------------------------

Segments = tuple[tuple[float, int], ...]


@functools.cache
def stream(seed: int, segments: Segments, version: int = 1, start: int = 0) -> tuple[tuple[LabeledExample, ...], ...]:
    """Labeled examples whose 0/1 errors follow Bernoulli(p) for each (p, count) segment, 1 s apart.

    Returns (examples, errors) where errors[i] is the error drawn for examples[i].
    """
    rng = random.Random(seed)
    examples, drawn = [], []
    i = start
    for p, count in segments:
        for _ in range(count):
            error = int(rng.random() < p)
            label = rng.randrange(2)
            ts = T0 + timedelta(seconds=i)
            examples.append(
                LabeledExample(
                    prediction_id=f"v{version}-{i}",
                    model_id="churn",
                    model_version=version,
                    features={"x": float(i % 7)},
                    prediction=1 - label if error else label,
                    label=label,
                    prediction_timestamp=ts,
                    label_timestamp=ts,
                )
            )
            drawn.append(error)
            i += 1
    return tuple(examples), tuple(drawn)


def run(watch: ModelWatch, examples) -> list[tuple[int, RetrainEvent]]:
    """Feed every example; the events with the index of the example that raised each."""
    return [(i, event) for i, example in enumerate(examples) if (event := watch.observe(example)) is not None]


def test_stream_errors_are_as_drawn():
    examples, drawn = stream(SEED, ((0.3, 2_000),))
    assert [example_error(e.prediction, e.label, "classification") for e in examples] == list(drawn)
    assert 0.27 < sum(drawn) / len(drawn) < 0.33


# -- stationary streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_stationary_stream_raises_no_event_at_all(rate):
    """The product's claim: 50,000 examples of a steady error rate, default policy (relative_drop included)."""
    examples, _ = stream(SEED, ((rate, 50_000),))
    watch = ModelWatch("churn", version=1)

    events = run(watch, examples)

    assert [(i, e.reason.value, e.detector) for i, e in events] == []
    assert watch.examples == 50_000


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_stationary_stream_raises_no_drift_event(rate):
    """The drift trigger alone (the performance rule off): no drift at a steady error rate."""
    examples, _ = stream(SEED, ((rate, 50_000),))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None), version=1)

    assert [(i, e.reason.value, e.detector) for i, e in run(watch, examples)] == []


# -- drift --------------------------------------------------------------------------------------------------


def test_abrupt_rise_raises_exactly_one_drift_event_soon_after_the_change():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.5, 15_000)))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **QUIET), version=1)
    position = StreamPosition(topic="labeled-examples", partition=2, offset=77)

    events = []
    for i, example in enumerate(examples):
        event = watch.observe(example, position=position)
        if event is not None:
            events.append((i, event))

    assert len(events) == 1, [(i, e.reason.value) for i, e in events]
    index, event = events[0]
    assert event.reason is RetrainReason.DRIFT
    assert 5_000 <= index < 6_000
    assert event.model_id == "churn" and event.model_version == 1
    assert event.detected_at == examples[index].label_timestamp
    assert {"ADWIN", "PageHinkley"} <= set(event.evidence.detectors)
    assert event.detector in {"ADWIN", "PageHinkley"}
    assert event.evidence.metric == "error_rate"
    assert event.evidence.before is not None and event.evidence.after is not None
    assert event.evidence.before < event.evidence.after
    assert event.evidence.examples_seen == index + 1
    assert event.evidence.position == position
    assert event.suggested_window is not None and event.suggested_window.last_n is not None
    assert 1 <= event.suggested_window.last_n <= index + 1


def test_quorum_of_one_fires_on_either_detector_alone():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.5, 3_000)))
    config = PolicyConfig(detectors=(DetectorSpec.of("PageHinkley"),), drift_quorum=1, relative_drop=None, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)

    events = run(watch, examples)

    assert len(events) == 1
    index, event = events[0]
    assert event.reason is RetrainReason.DRIFT and event.detector == "PageHinkley"
    assert event.evidence.detectors == ["PageHinkley"]
    assert 5_000 <= index < 6_000


# -- cooldown and model updates -----------------------------------------------------------------------------

# A rise at 5,000, a second rise at 7,000, a fall at 9,000 and a third rise at 14,000.
EPISODES: Segments = ((0.1, 5_000), (0.5, 2_000), (0.9, 2_000), (0.1, 5_000), (0.6, 3_000))


def test_cooldown_holds_back_events_until_enough_examples_have_passed():
    examples, _ = stream(SEED, EPISODES)
    cooldown = 6_000
    watch = ModelWatch(
        "churn", config=PolicyConfig(relative_drop=None, cooldown_examples=cooldown, cooldown_s=10**9), version=1
    )

    events = run(watch, examples)

    indices = [i for i, _ in events]
    assert all(e.reason is RetrainReason.DRIFT for _, e in events)
    assert len(indices) == 2, indices
    first, second = indices
    assert 5_000 <= first < 6_000
    assert second - first >= cooldown
    assert 14_000 <= second < 15_000  # the third rise: the second one fell inside the cooldown


def test_without_the_cooldown_the_second_rise_fires():
    """Control for the test above: the rise at 7,000 is real, the cooldown is what held it back."""
    examples, _ = stream(SEED, EPISODES)
    config = PolicyConfig(relative_drop=None, cooldown_examples=1, cooldown_s=10**9)
    watch = ModelWatch("churn", config=config, version=1)

    indices = [i for i, _ in run(watch, examples)]

    assert any(5_000 <= i < 6_000 for i in indices), indices
    assert any(7_000 <= i < 8_000 for i in indices), indices


def test_time_cooldown_ends_after_cooldown_s_of_event_time():
    examples, _ = stream(SEED, EPISODES)
    config = PolicyConfig(relative_drop=None, cooldown_examples=10**9, cooldown_s=1_500.0)  # examples are 1 s apart
    watch = ModelWatch("churn", config=config, version=1)

    indices = [i for i, _ in run(watch, examples)]

    assert len(indices) >= 2, indices
    assert indices[1] - indices[0] >= 1_500
    assert any(7_000 <= i < 8_000 for i in indices), indices  # 1,500 s after the first, before the second rise ends


def test_model_updated_clears_the_cooldown_and_ignores_the_old_version():
    old, _ = stream(SEED, ((0.1, 5_000), (0.5, 3_000)), version=1)
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **QUIET), version=1)
    assert len(run(watch, old)) == 1  # in cooldown from here on, "forever"

    watch.model_updated(2)

    assert watch.version == 2
    assert watch.examples == 0 and watch.monitor.n == 0
    assert watch.rolling_error is None
    # Late errors of version 1 (all wrong) arrive after the swap: not version 2's baseline.
    late, _ = stream(SEED + 1, ((1.0, 1_000),), version=1, start=8_000)
    assert run(watch, late) == []
    assert watch.ignored_stale == 1_000
    assert watch.rolling_error is None and watch.examples == 0 and watch.monitor.n == 0

    new, _ = stream(SEED + 2, ((0.1, 3_000), (0.5, 3_000)), version=2, start=9_000)
    events = run(watch, new)

    assert len(events) == 1  # the cooldown did not survive the update
    index, event = events[0]
    assert event.reason is RetrainReason.DRIFT and event.model_version == 2
    assert 3_000 <= index < 4_000
    assert event.evidence.examples_seen == index + 1  # counted from the update


def test_a_newer_version_in_an_example_is_adopted_with_a_fresh_baseline():
    watch = ModelWatch("churn", version=1)
    watch.model_updated(1, accuracy=0.95)
    before, _ = stream(SEED, ((0.2, 300),), version=1)
    run(watch, before)
    assert watch.examples == 300

    newer, drawn = stream(SEED, ((0.2, 10),), version=3, start=300)
    assert watch.observe(newer[0]) is None

    assert watch.version == 3
    assert watch.reference_accuracy is None  # 0.95 was version 1's
    assert watch.examples == 1 and watch.monitor.n == 1
    assert watch.rolling_error == drawn[0]
    # Version 1 is now stale.
    assert watch.observe(before[0]) is None
    assert watch.ignored_stale == 1 and watch.examples == 1


# -- performance --------------------------------------------------------------------------------------------


def test_accuracy_below_the_relative_drop_of_the_reference_fires():
    """Promoted at validation accuracy 0.9; live accuracy is 0.75 from the start: below 0.9 x 0.9 = 0.81."""
    examples, drawn = stream(SEED, ((0.25, 2_000),))
    watch = ModelWatch("churn", config=PolicyConfig(**QUIET))
    watch.model_updated(1, accuracy=0.9)

    events = run(watch, examples)

    assert len(events) == 1
    index, event = events[0]
    assert index == 499  # the first full window of 500
    assert event.reason is RetrainReason.PERFORMANCE
    assert event.detector == "rolling_accuracy"
    assert event.evidence.metric == "accuracy"
    assert event.evidence.before == pytest.approx(0.9)
    assert event.evidence.after == pytest.approx(1 - sum(drawn[:500]) / 500, abs=1e-6)
    assert event.evidence.values["threshold"] == pytest.approx(0.81)
    assert event.evidence.window_width == 500
    assert event.suggested_window is not None and event.suggested_window.last_n == 500


def test_accuracy_at_the_reference_does_not_fire():
    examples, _ = stream(SEED, ((0.1, 5_000),))
    watch = ModelWatch("churn")
    watch.model_updated(1, accuracy=0.9)

    assert run(watch, examples) == []


def test_min_accuracy_is_an_absolute_floor():
    examples, drawn = stream(SEED, ((0.3, 2_000),))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, min_accuracy=0.8, **QUIET), version=1)

    events = run(watch, examples)

    assert len(events) == 1
    index, event = events[0]
    assert index == 499
    assert event.reason is RetrainReason.PERFORMANCE
    assert event.evidence.metric == "accuracy"
    assert event.evidence.values["threshold"] == pytest.approx(0.8)
    assert event.evidence.after == pytest.approx(1 - sum(drawn[:500]) / 500, abs=1e-6)


def test_no_floor_no_performance_event():
    examples, _ = stream(SEED, ((0.3, 2_000),))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None), version=1)

    assert run(watch, examples) == []


# -- data volume --------------------------------------------------------------------------------------------


def test_cold_start_asks_for_a_first_model_at_cold_start_examples():
    examples, _ = stream(SEED, ((0.1, 1_500),), version=0)
    watch = ModelWatch("churn", config=PolicyConfig(cold_start_examples=1_000, **QUIET))
    assert watch.version == 0

    events = run(watch, examples)

    assert len(events) == 1
    index, event = events[0]
    assert index == 999  # the 1,000th example
    assert event.reason is RetrainReason.DATA_VOLUME
    assert event.detector == "cold_start"
    assert event.model_version == 0
    assert event.evidence.examples_seen == 1_000
    assert event.evidence.values["threshold"] == 1_000.0
    assert event.suggested_window is not None and event.suggested_window.last_n == 1_000


def test_versioned_model_asks_after_volume_examples():
    examples, _ = stream(SEED, ((0.1, 4_000),), version=1)
    config = PolicyConfig(cold_start_examples=1_000, volume_examples=3_000, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)

    events = run(watch, examples)

    assert [(i, e.reason, e.detector) for i, e in events] == [(2_999, RetrainReason.DATA_VOLUME, "data_volume")]
    event = events[0][1]
    assert event.evidence.examples_seen == 3_000
    assert event.suggested_window is not None and event.suggested_window.last_n == 3_000


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drift_quorum": 0},
        {"drift_quorum": 3},  # two detectors by default
        {"detectors": (DetectorSpec.of("ADWIN"),), "drift_quorum": 2},
        {"relative_drop": 0.0},
        {"relative_drop": 1.0},
        {"relative_drop": 1.5},
        {"relative_drop": -0.1},
    ],
)
def test_policy_config_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)


def test_policy_config_accepts_its_bounds():
    assert PolicyConfig(drift_quorum=1).drift_quorum == 1
    assert PolicyConfig(drift_quorum=2, relative_drop=None).relative_drop is None
    assert PolicyConfig(relative_drop=0.5).relative_drop == 0.5
