"""The replayer's pure pieces: label delays, which predictions get a label, the label heap, pacing, validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from retrain.producers.replay import (
    LabelDelay,
    LabelSampler,
    LabelSchedule,
    ReplayConfig,
    Replayer,
    ReplayStats,
    TokenBucket,
    parse_label_delay,
)
from retrain.schemas import LabelEvent

T0 = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", LabelDelay("fixed", 0.0)),
        ("2.5", LabelDelay("fixed", 2.5)),
        ("fixed:2.5", LabelDelay("fixed", 2.5)),
        (" FIXED:0 ", LabelDelay("fixed", 0.0)),
        ("uniform:1,5", LabelDelay("uniform", 1.0, 5.0)),
        ("uniform:3,3", LabelDelay("uniform", 3.0, 3.0)),
        ("exp:2.0", LabelDelay("exp", 2.0)),
    ],
)
def test_delay_specs_parse(spec: str, expected: LabelDelay):
    assert parse_label_delay(spec) == expected


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "use 0, fixed:SECONDS"),
        ("soon", "use 0, fixed:SECONDS"),
        ("-1", ">= 0"),
        ("fixed:inf", ">= 0"),
        ("fixed:nan", ">= 0"),
        ("fixed:1,2", "use 0, fixed:SECONDS"),
        ("uniform:5", "use 0, fixed:SECONDS"),
        ("uniform:5,1", "LOW <= HIGH"),
        ("uniform:1,x", "use 0, fixed:SECONDS"),
        ("exp:0", "mean > 0"),
        ("gauss:1,2", "use 0, fixed:SECONDS"),
    ],
)
def test_bad_delay_specs_are_refused_with_the_accepted_forms(spec: str, why: str):
    with pytest.raises(ValueError, match="invalid label delay") as raised:
        parse_label_delay(spec)
    assert why in str(raised.value)


def test_delay_samples_follow_their_distribution():
    rng = random.Random(1)
    assert [LabelDelay("fixed", 2.5).sample(rng) for _ in range(3)] == [2.5, 2.5, 2.5]
    uniform = [LabelDelay("uniform", 1.0, 5.0).sample(rng) for _ in range(10_000)]
    assert min(uniform) >= 1.0 and max(uniform) <= 5.0
    assert abs(sum(uniform) / len(uniform) - 3.0) < 0.05
    exponential = [LabelDelay("exp", 2.0).sample(rng) for _ in range(20_000)]
    assert min(exponential) >= 0.0
    assert abs(sum(exponential) / len(exponential) - 2.0) < 0.06  # standard error 0.014
    assert LabelDelay("uniform", 1.0, 5.0).mean == 3.0 and LabelDelay("exp", 2.0).mean == 2.0


def draws(sampler: LabelSampler, n: int) -> list[float | None]:
    return [sampler.draw() for _ in range(n)]


def test_the_labelled_subset_depends_only_on_the_seed_and_the_fraction():
    first = draws(LabelSampler(0.5, parse_label_delay("0"), seed=7), 10_000)
    again = draws(LabelSampler(0.5, parse_label_delay("0"), seed=7), 10_000)
    other_delays = draws(LabelSampler(0.5, parse_label_delay("exp:2"), seed=7), 10_000)
    other_seed = draws(LabelSampler(0.5, parse_label_delay("0"), seed=8), 10_000)

    labelled = [i for i, delay in enumerate(first) if delay is not None]
    assert first == again
    assert [i for i, delay in enumerate(other_delays) if delay is not None] == labelled
    assert [i for i, delay in enumerate(other_seed) if delay is not None] != labelled
    assert 4_850 <= len(labelled) <= 5_150  # Binomial(10,000, 0.5): 3 standard deviations
    assert {delay for delay in first if delay is not None} == {0.0}


def test_a_fraction_of_one_labels_everything_and_other_fractions_are_refused():
    assert None not in draws(LabelSampler(1.0, parse_label_delay("fixed:1"), seed=3), 1_000)
    for fraction in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match=r"label fraction must be in \(0, 1\]"):
            LabelSampler(fraction, parse_label_delay("0"), seed=3)


def label(i: int) -> LabelEvent:
    return LabelEvent(prediction_id=f"p-{i}", model_id="m", label=i % 2, timestamp=T0 + timedelta(seconds=i))


def test_labels_leave_the_schedule_when_due_earliest_first_ties_in_order():
    schedule = LabelSchedule()
    for due, i in [(5.0, 0), (1.0, 1), (3.0, 2), (1.0, 3), (9.0, 4)]:
        schedule.add(due, label(i))

    assert len(schedule) == 5 and schedule.next_due() == 1.0
    assert schedule.pop_due(0.5) == []
    assert [item.prediction_id for item in schedule.pop_due(3.0)] == ["p-1", "p-3", "p-2"]
    assert len(schedule) == 2 and schedule.next_due() == 5.0
    assert [item.prediction_id for item in schedule.drain()] == ["p-0", "p-4"]
    assert len(schedule) == 0 and schedule.next_due() is None and schedule.drain() == []


def test_token_bucket_paces_without_drift_even_when_every_wake_up_is_late():
    now, sent = 0.0, 0
    bucket = TokenBucket(rate=100.0, now=now)
    while sent < 1_000:
        wait = bucket.reserve(now)
        now += wait + (0.001 if wait > 0 else 0.0)  # every sleep overshoots by 1 ms
        sent += 1
    # Sleeping 1/rate per record would end at 1,000 x 11 ms = 11 s; the bucket keeps the schedule: 10 s.
    assert 9.99 <= now <= 10.0 + bucket.capacity / bucket.rate


def test_token_bucket_first_send_is_immediate_then_one_per_interval():
    bucket = TokenBucket(rate=4.0, now=10.0)
    assert bucket.capacity == 1.0
    assert bucket.reserve(10.0) == 0.0
    assert bucket.reserve(10.0) == 0.25
    assert bucket.reserve(10.25) == 0.25  # the token it was told to wait for is the one it used
    assert bucket.reserve(20.0) == 0.0  # after a pause, at most `capacity` tokens are saved up
    assert bucket.reserve(20.0) == 0.25


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": 0.0}, "rate must be a positive number"),
        ({"rate": -5.0}, "rate must be a positive number"),
        ({"rate": float("inf")}, "rate must be a positive number"),
        ({"rate": float("nan")}, "rate must be a positive number"),
        ({"label_fraction": 0.0}, "label fraction"),
        ({"label_fraction": 1.5}, "label fraction"),
        ({"label_delay": "later"}, "invalid label delay"),
    ],
)
def test_replay_config_refuses_bad_values(changes: dict, message: str):
    with pytest.raises(ValueError, match=message):
        ReplayConfig(**changes)


def test_replay_config_defaults_and_its_parsed_delay():
    config = ReplayConfig(rate=250.0, label_delay="uniform:1,5", label_fraction=0.25, seed=3)
    assert config.delay == LabelDelay("uniform", 1.0, 5.0)
    assert ReplayConfig() == ReplayConfig(None, "0", 1.0, 0, False)


def test_prediction_ids_and_the_run_id():
    replayer = Replayer(None, [], "sea", run_id="run-7")  # type: ignore[arg-type]  (nothing is published)
    assert replayer.prediction_id(0) == "run-7-00000000"
    assert replayer.prediction_id(12_345) == "run-7-00012345"
    generated = Replayer(None, [], "sea").run_id  # type: ignore[arg-type]
    assert len(generated) == 12 and generated != Replayer(None, [], "sea").run_id  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run id"):
        Replayer(None, [], "sea", run_id="has space")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pattern"):
        Replayer(None, [], "../escape")  # type: ignore[arg-type]


def test_stats_summary_and_rate():
    stats = ReplayStats("r", requests_sent=2_000, labels_sent=1_000, labels_withheld=1_000, elapsed_s=4.0)
    assert stats.rate_achieved == 500.0
    assert stats.summary() == "2,000 requests, 1,000 labels sent, 1,000 withheld; 4.0 s, 500 requests/s"
    assert ReplayStats("r").rate_achieved == 0.0
    failing = ReplayStats("r", requests_sent=3, labels_pending=2, send_errors=1, elapsed_s=1.0)
    assert failing.summary() == (
        "3 requests, 0 labels sent, 0 withheld, 2 pending, 1 NOT ACKNOWLEDGED; 1.0 s, 3 requests/s"
    )
