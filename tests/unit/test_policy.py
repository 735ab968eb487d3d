"""ModelWatch: when a model's labeled examples call for a retrain (drift, performance, data volume)."""

from __future__ import annotations

import pytest

from retrain.decisions.drift import DetectorSpec, example_error, proportion_rise_z
from retrain.decisions.episode import STALE
from retrain.decisions.policy import ModelWatch, PolicyConfig
from retrain.schemas import RetrainEvent, RetrainReason, StreamPosition, TrainingWindow
from tests.helpers.policy_stream import SEED, Segments, stream

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


# One fit per episode, 500 examples after the change point: short streams, one event to look at.
ONE_FIT = {"refit_first": 500, "refit_until": 500}


def test_abrupt_rise_opens_one_episode_that_asks_for_fits_on_the_post_change_examples_only():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.5, 15_000)))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **QUIET), version=1)
    position = StreamPosition(topic="labeled-examples", partition=2, offset=77)

    events, opened = [], []
    for i, example in enumerate(examples):
        event = watch.observe(example, position=position)
        if watch.opened is not None:
            opened.append(watch.opened)
        if event is not None:
            events.append((i, event))

    assert len(opened) == 1
    episode = opened[0]
    assert 5_000 <= episode.detected_at < 5_300
    assert abs(episode.change_at - 5_000) <= 30  # the CUSUM estimate, not the detector's late window
    # Fits at 1,500, 3,750 and then 5,000 post-change examples (refit_first x refit_growth, capped at
    # refit_until); the model is never updated here, so none is skipped as recovered.
    assert [(i - episode.change_at + 1, e.suggested_window.last_n) for i, e in events] == [
        (1_500, 1_500),
        (3_750, 3_750),
        (5_000, 5_000),
    ]
    first = events[0][1]
    assert first.reason is RetrainReason.DRIFT and first.model_id == "churn" and first.model_version == 1
    assert first.detected_at == examples[events[0][0]].label_timestamp
    assert first.detector in {"ADWIN", "PageHinkley"} and first.detector in first.evidence.detectors
    assert first.evidence.metric == "error_rate"
    assert first.evidence.before == pytest.approx(0.1, abs=0.015)  # the error before the change
    assert first.evidence.values["change_at"] == episode.change_at
    assert first.evidence.values["detected_at"] == episode.detected_at
    assert first.evidence.values["position"] == events[0][0]
    assert [e.evidence.values["refit"] for _, e in events] == [1.0, 2.0, 3.0]
    assert first.evidence.position == position


def test_a_confident_change_marks_the_champion_stale_and_becomes_the_start_of_later_windows():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.5, 15_000)))
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **QUIET), version=1)

    events = run(watch, examples)

    assert [e.evidence.values[STALE] for _, e in events] == [1.0, 1.0, 1.0]
    assert watch.last_change_at == events[0][1].evidence.values["change_at"]


def test_a_rise_within_the_threshold_asks_once_for_everything_since_the_last_confident_change_and_for_evidence():
    # 0.10 -> 0.13 at 8,000, detected late (12,159): at the first fit the rise is about 5 standard errors.
    examples, _ = stream(SEED, ((0.1, 8_000), (0.13, 12_000)))
    strict = PolicyConfig(relative_drop=None, confident_rise_z=8.0, **QUIET)
    watch = ModelWatch("churn", config=strict, version=1)

    events = run(watch, examples)

    assert [(i, e.suggested_window.last_n, e.evidence.values[STALE]) for i, e in events] == [(13_597, 13_598, 0.0)]
    assert watch.last_change_at == 0 and watch.episode is None  # one fit, no refits after it

    for threshold in (3.0, None):  # the default threshold, and none: the same change is confident
        config = PolicyConfig(relative_drop=None, confident_rise_z=threshold, **QUIET)
        confident = ModelWatch("churn", config=config, version=1)
        events = run(confident, examples)
        assert [(i, e.suggested_window.last_n, e.evidence.values[STALE]) for i, e in events] == [(13_597, 5_000, 1.0)]
        assert confident.last_change_at == 7_972 == events[0][1].evidence.values["change_at"]


def test_quorum_of_one_fires_on_either_detector_alone():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.5, 3_000)))
    config = PolicyConfig(
        detectors=(DetectorSpec.of("PageHinkley"),), drift_quorum=1, relative_drop=None, **ONE_FIT, **QUIET
    )
    watch = ModelWatch("churn", config=config, version=1)

    events = run(watch, examples)

    assert len(events) == 1
    index, event = events[0]
    assert event.reason is RetrainReason.DRIFT and event.detector == "PageHinkley"
    assert event.evidence.detectors == ["PageHinkley"]
    assert 5_000 <= event.evidence.values["detected_at"] < 5_300
    assert index == event.evidence.values["change_at"] + 499


def test_a_refit_is_skipped_once_the_model_is_back_to_its_error_before_the_change():
    config = PolicyConfig(relative_drop=None, refit_first=1_000, refit_until=3_000, refit_growth=2.0, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)
    before, _ = stream(SEED, ((0.1, 5_000), (0.5, 1_800)))
    events = run(watch, before)
    assert [e.suggested_window.last_n for _, e in events] == [1_000]
    assert watch.episode is not None and watch.episode.sizes == (1_000, 2_000, 3_000)

    watch.model_updated(2)  # the refit went into service and is as good as the old model was before the change
    after, _ = stream(SEED + 1, ((0.1, 3_000),), version=2, start=6_800)

    assert run(watch, after) == []
    assert watch.episode is None


def test_a_refit_that_has_not_recovered_is_followed_by_the_next():
    config = PolicyConfig(relative_drop=None, refit_first=1_000, refit_until=3_000, refit_growth=2.0, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)
    before, _ = stream(SEED, ((0.1, 5_000), (0.5, 1_800)))
    run(watch, before)
    change_at = watch.episode.change_at

    watch.model_updated(2)  # the refit is still worse than before the change: 0.2 > 0.1 + 0.02
    after, _ = stream(SEED + 1, ((0.2, 3_000),), version=2, start=6_800)

    # Due at 2,000 post-change examples, asked for once version 2 has a full window (500) to be judged on.
    expected = [6_800 + 500 - change_at, 3_000]
    assert [e.suggested_window.last_n for _, e in run(watch, after)] == expected


def test_old_version_examples_after_a_swap_still_count_as_post_change_data():
    config = PolicyConfig(relative_drop=None, refit_first=1_000, refit_until=2_000, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)
    before, _ = stream(SEED, ((0.1, 5_000), (0.5, 1_500)))
    run(watch, before)
    change_at = watch.episode.change_at
    watch.model_updated(2)

    late, _ = stream(SEED + 1, ((0.5, 1_500),), version=1, start=6_500)  # version 1's labels, arriving late
    assert run(watch, late) == []
    assert watch.ignored_stale == 1_500 and watch.examples == 0
    new, _ = stream(SEED + 2, ((0.5, 500),), version=2, start=8_000)  # version 2, not recovered

    events = run(watch, new)

    # The 1,500 stale examples count: the fit is due (8,500 - change_at >= 2,000) as soon as version 2 is judged.
    assert 8_500 - change_at > 2_000
    assert [(i, e.suggested_window.last_n, e.evidence.window_width) for i, e in events] == [
        (499, 2_000, 8_500 - change_at)
    ]


def test_an_oracle_episode_starts_exactly_where_it_is_told():
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **ONE_FIT, **QUIET), version=1)
    examples, _ = stream(SEED, ((0.1, 2_000),))
    run(watch, examples[:1_000])
    episode = watch.open_episode(change_at=1_000)

    events = run(watch, examples[1_000:])

    assert episode.detected_at == 1_000 and episode.detector == "oracle"
    assert [(i + 1_000, e.suggested_window.last_n) for i, e in events] == [(1_499, 500)]


# -- cooldown and model updates -----------------------------------------------------------------------------

# A rise at 5,000, a second rise at 7,000, a fall at 9,000 and a third rise at 14,000.
EPISODES: Segments = ((0.1, 5_000), (0.5, 2_000), (0.9, 2_000), (0.1, 5_000), (0.6, 3_000))


def detections(watch: ModelWatch, examples) -> list[int]:
    found = []
    for example in examples:
        watch.observe(example)
        if watch.opened is not None:
            found.append(watch.opened.detected_at)
    return found


def test_cooldown_holds_back_episodes_until_enough_examples_have_passed():
    examples, _ = stream(SEED, EPISODES)
    cooldown = 6_000
    config = PolicyConfig(relative_drop=None, cooldown_examples=cooldown, cooldown_s=10**9, **ONE_FIT)
    watch = ModelWatch("churn", config=config, version=1)

    found = detections(watch, examples)

    assert len(found) == 2, found
    first, second = found
    assert 5_000 <= first < 5_300
    assert 14_000 <= second < 14_300  # the third rise: the second one fell inside the cooldown


def test_without_the_cooldown_the_second_rise_opens_its_own_episode():
    """Control for the test above: the rise at 7,000 is real, the cooldown is what held it back."""
    examples, _ = stream(SEED, EPISODES)
    config = PolicyConfig(relative_drop=None, cooldown_examples=1, cooldown_s=10**9, **ONE_FIT)
    watch = ModelWatch("churn", config=config, version=1)

    found = detections(watch, examples)

    assert any(5_000 <= i < 5_300 for i in found), found
    assert any(7_000 <= i < 7_300 for i in found), found


def test_time_cooldown_ends_after_cooldown_s_of_event_time():
    examples, _ = stream(SEED, EPISODES)
    config = PolicyConfig(relative_drop=None, cooldown_examples=10**9, cooldown_s=1_500.0, **ONE_FIT)
    watch = ModelWatch("churn", config=config, version=1)  # examples are 1 s apart

    found = detections(watch, examples)

    assert len(found) >= 2, found
    assert found[1] - found[0] >= 1_500
    assert any(7_000 <= i < 8_000 for i in found), found  # 1,500 s after the first, before the second rise ends


def test_model_updated_clears_the_cooldown_and_ignores_the_old_version():
    old, _ = stream(SEED, ((0.1, 5_000), (0.5, 3_000)), version=1)
    watch = ModelWatch("churn", config=PolicyConfig(relative_drop=None, **ONE_FIT, **QUIET), version=1)
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
    found = detections(watch, new)

    assert len(found) == 1  # the cooldown did not survive the update
    assert 12_000 <= found[0] < 12_300  # positions count every example of the model (9,000 before), stale ones too


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


def test_accuracy_below_the_relative_drop_of_the_measured_reference_fires_at_once_with_the_naive_rule():
    """The reference is the live accuracy over the first 5 windows after the swap (not the trainer's holdout)."""
    examples, drawn = stream(SEED, ((0.1, 2_500), (0.35, 1_500)))
    watch = ModelWatch("churn", config=PolicyConfig(detectors=(), post_change_training=False, **QUIET))
    watch.model_updated(1, accuracy=0.99)  # an optimistic validation score: not the reference

    events = run(watch, examples)

    reference = 1 - sum(drawn[:2_500]) / 2_500
    window = [1 - sum(drawn[i - 499 : i + 1]) / 500 for i in range(499, len(drawn))]
    expected = next(i + 499 for i, accuracy in enumerate(window) if i + 499 >= 2_499 and accuracy < 0.9 * reference)
    assert len(events) == 1
    index, event = events[0]
    assert index == expected and 2_500 < index < 3_000
    assert event.reason is RetrainReason.PERFORMANCE
    assert event.detector == "rolling_accuracy"
    assert event.evidence.metric == "accuracy"
    assert event.evidence.before == pytest.approx(reference, abs=1e-6)
    assert event.evidence.after == pytest.approx(window[index - 499], abs=1e-6)
    assert event.evidence.values["threshold"] == pytest.approx(0.9 * reference, abs=1e-6)
    assert event.evidence.window_width == 500
    assert event.suggested_window is None  # the trainer's default window
    assert watch.validation_accuracy == 0.99


def test_a_performance_drop_opens_an_episode_at_the_estimated_change():
    examples, _ = stream(SEED, ((0.1, 3_000), (0.4, 3_000)))
    config = PolicyConfig(detectors=(), min_accuracy=0.8, relative_drop=None, **ONE_FIT, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)

    found = detections(watch, examples)

    assert len(found) == 1 and 3_000 <= found[0] < 3_500
    assert watch.opened is None and watch.episode is None  # its one fit was asked for
    events = run(ModelWatch("churn", config=config, version=1), examples)
    assert [e.reason for _, e in events] == [RetrainReason.PERFORMANCE]
    assert abs(events[0][1].evidence.values["change_at"] - 3_000) <= 50


def test_accuracy_at_the_reference_does_not_fire():
    examples, _ = stream(SEED, ((0.1, 5_000),))
    watch = ModelWatch("churn")
    watch.model_updated(1, accuracy=0.9)

    assert run(watch, examples) == []


def observe_all(watch: ModelWatch, examples, start: int):
    """Feed every example; the episodes opened and the events, with the position of the example behind each."""
    opened, events = [], []
    for i, example in enumerate(examples, start=start):
        event = watch.observe(example)
        if watch.opened is not None:
            opened.append((i, watch.opened))
        if event is not None:
            events.append((i, event))
    return opened, events


def swapped_watch(config: PolicyConfig, holdout: int | None) -> ModelWatch:
    """Version 1 served 2,000 examples at error 0.1; version 2, validated at 0.9 accuracy, is now in service."""
    watch = ModelWatch("churn", config=config, version=1)
    before, _ = stream(SEED, ((0.1, 2_000),), version=1)
    assert run(watch, before) == []
    watch.model_updated(2, accuracy=0.9, holdout=holdout)
    return watch


def test_a_version_serving_worse_than_it_validated_opens_an_episode_at_its_first_served_example():
    """Version 2 errs at 0.3 from its first prediction: no detector sees a rise, its validation says it is stale."""
    watch = swapped_watch(PolicyConfig(relative_drop=None, **QUIET), holdout=1_000)
    after, drawn = stream(SEED + 1, ((0.3, 6_000),), version=2, start=2_000)

    opened, events = observe_all(watch, after, start=2_000)

    assert proportion_rise_z(0.1, 1_000, sum(drawn[:500]) / 500, 500) >= 4.0
    assert [(i, e.change_at, e.reason, e.detector) for i, e in opened] == [
        (2_499, 2_000, RetrainReason.PERFORMANCE, "validation_gap")  # at its first full window, from its swap
    ]
    assert opened[0][1].before_error == pytest.approx(0.1)  # its validation error: the mark of recovery
    # Fits on the examples it served: 1,500, 3,750, then 5,000 of them.
    assert [(i, e.suggested_window.last_n) for i, e in events] == [(3_499, 1_500), (5_749, 3_750), (6_999, 5_000)]
    first = events[0][1]
    assert first.reason is RetrainReason.PERFORMANCE and first.detector == "validation_gap"
    assert first.evidence.values["change_at"] == 2_000 and first.evidence.values[STALE] == 1.0


@pytest.mark.parametrize(
    ("rate", "z", "holdout"),
    [
        (0.12, 4.0, 1_000),  # within the noise of a 1,000-example holdout and a 500-example window
        (0.3, None, 1_000),  # the rule is off
        (0.3, 4.0, None),  # the holdout's size is unknown: no test without it
    ],
)
def test_no_validation_gap_within_noise_when_off_or_without_the_holdout_size(rate, z, holdout):
    watch = swapped_watch(PolicyConfig(relative_drop=None, validation_rise_z=z, **QUIET), holdout=holdout)
    after, _ = stream(SEED + 1, ((rate, 6_000),), version=2, start=2_000)

    assert observe_all(watch, after, start=2_000) == ([], [])


def test_the_validation_gap_is_judged_once_at_the_first_full_window():
    """A rise later in a version's service is the detectors' to find, not the validation gap's."""
    config = PolicyConfig(detectors=(), relative_drop=None, **QUIET)
    watch = swapped_watch(config, holdout=1_000)
    after, _ = stream(SEED + 1, ((0.1, 500), (0.5, 3_000)), version=2, start=2_000)

    assert observe_all(watch, after, start=2_000) == ([], [])


def test_min_accuracy_is_an_absolute_floor():
    examples, drawn = stream(SEED, ((0.3, 2_000),))
    config = PolicyConfig(relative_drop=None, min_accuracy=0.8, post_change_training=False, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)

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


def test_cold_start_fits_at_cold_start_examples_and_again_when_the_window_is_full():
    examples, _ = stream(SEED, ((0.1, 6_000),), version=0)
    watch = ModelWatch("churn", config=PolicyConfig(cold_start_examples=1_000, refit_until=5_000, **QUIET))
    assert watch.version == 0

    events = run(watch, examples)

    assert [(i, e.reason, e.detector, e.suggested_window.last_n) for i, e in events] == [
        (999, RetrainReason.DATA_VOLUME, "cold_start", 1_000),
        (4_999, RetrainReason.DATA_VOLUME, "cold_start", 5_000),
    ]
    assert events[0][1].model_version == 0


def test_a_cold_start_longer_than_the_refit_window_trains_on_all_of_it():
    examples, _ = stream(SEED, ((0.1, 8_000),), version=0)
    watch = ModelWatch("churn", config=PolicyConfig(cold_start_examples=7_000, refit_until=5_000, **QUIET))

    events = run(watch, examples)

    assert [(i, e.suggested_window.last_n, e.evidence.values[STALE]) for i, e in events] == [(6_999, 7_000, 1.0)]


def test_cold_start_with_the_naive_rule_asks_once():
    examples, _ = stream(SEED, ((0.1, 6_000),), version=0)
    config = PolicyConfig(cold_start_examples=1_000, post_change_training=False, **QUIET)
    events = run(ModelWatch("churn", config=config), examples)

    assert [(i, e.detector, e.suggested_window.last_n) for i, e in events] == [(999, "cold_start", 1_000)]
    assert events[0][1].evidence.values["threshold"] == 1_000.0


def test_versioned_model_asks_after_volume_examples_for_everything_since_the_last_confident_change():
    examples, _ = stream(SEED, ((0.1, 4_000),), version=1)
    config = PolicyConfig(cold_start_examples=1_000, volume_examples=3_000, **QUIET)
    watch = ModelWatch("churn", config=config, version=1)

    events = run(watch, examples)

    assert [(i, e.reason, e.detector) for i, e in events] == [(2_999, RetrainReason.DATA_VOLUME, "data_volume")]
    event = events[0][1]
    assert event.evidence.examples_seen == 3_000
    assert event.suggested_window == TrainingWindow(last_n=3_000)  # no confident change yet: the stream's start
    assert event.evidence.values[STALE] == 0.0  # the champion is presumed good: a challenger needs evidence


def test_the_naive_volume_rule_asks_for_the_default_window_and_trusts_its_trigger():
    examples, _ = stream(SEED, ((0.1, 4_000),), version=1)
    config = PolicyConfig(cold_start_examples=1_000, volume_examples=3_000, post_change_training=False, **QUIET)

    events = run(ModelWatch("churn", config=config, version=1), examples)

    assert [(i, e.suggested_window, e.evidence.values[STALE]) for i, e in events] == [(2_999, None, 1.0)]


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
        {"refit_first": 0},
        {"refit_first": 6_000, "refit_until": 5_000},
        {"refit_growth": 1.0},
        {"change_history": 1},
    ],
)
def test_policy_config_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)


def test_refit_sizes_grow_until_the_window_is_full():
    assert PolicyConfig(refit_first=3_000, refit_growth=2.5, refit_until=5_000).refit_sizes() == (3_000, 5_000)
    assert PolicyConfig(refit_first=500, refit_growth=2.0, refit_until=5_000).refit_sizes() == (
        500,
        1_000,
        2_000,
        4_000,
        5_000,
    )
    assert PolicyConfig(refit_first=5_000, refit_until=5_000).refit_sizes() == (5_000,)


def test_policy_config_accepts_its_bounds():
    assert PolicyConfig(drift_quorum=1).drift_quorum == 1
    assert PolicyConfig(drift_quorum=2, relative_drop=None).relative_drop is None
    assert PolicyConfig(relative_drop=0.5).relative_drop == 0.5
