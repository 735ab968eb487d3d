"""LabelJoiner: predictions meet their late labels by prediction_id, in event time, within a TTL and a cap."""

from __future__ import annotations

import math
import random

import pytest

from retrain.decisions.join import LabelJoiner, LabelOutcome, PredictionOutcome
from retrain.schemas import LabeledExample
from tests.helpers.join_records import at, label, prediction


def watermark_to(joiner: LabelJoiner, seconds: float, tag: str = "clock") -> None:
    """Move both sides' event time to ``seconds`` with an unrelated prediction and label (both stay pending)."""
    assert joiner.add_prediction(prediction(f"{tag}-p", seconds), offset=10_000)[0] is PredictionOutcome.PENDING
    assert joiner.add_label(label(f"{tag}-l", seconds), offset=10_000)[0] is LabelOutcome.PENDING


# -- joining ------------------------------------------------------------------------------------------------


def test_prediction_then_label_joins_with_fields_from_both_sides():
    joiner = LabelJoiner()
    p = prediction("a1", 10.0, version=7, value="churns")
    lab = label("a1", 95.5, value="stays")

    assert joiner.add_prediction(p, offset=3) == (PredictionOutcome.PENDING, None)
    assert joiner.pending_predictions == 1 and joiner.pending_labels == 0
    outcome, example = joiner.add_label(lab, offset=8)

    assert outcome is LabelOutcome.JOINED
    assert example == LabeledExample(
        prediction_id="a1",
        model_id="churn",
        model_version=7,
        features={"tenure": 12.0, "spend": 3.5},
        prediction="churns",
        label="stays",
        prediction_timestamp=at(10.0),
        label_timestamp=at(95.5),
    )
    assert joiner.stats.joined == 1
    assert joiner.pending_predictions == 0 and joiner.pending_labels == 0


def test_label_then_prediction_joins_too():
    joiner = LabelJoiner()
    assert joiner.add_label(label("b2", 50.0, value=1), offset=0) == (LabelOutcome.PENDING, None)
    assert joiner.pending_labels == 1

    outcome, example = joiner.add_prediction(prediction("b2", 20.0, version=2, value=0), offset=4)

    assert outcome is PredictionOutcome.JOINED
    assert example is not None
    assert example.prediction_id == "b2"
    assert example.model_version == 2
    assert example.prediction == 0 and example.label == 1
    assert example.prediction_timestamp == at(20.0) and example.label_timestamp == at(50.0)
    assert example.features == {"tenure": 12.0, "spend": 3.5}
    assert joiner.stats.joined == 1
    assert joiner.pending_predictions == 0 and joiner.pending_labels == 0


def test_duplicate_label_after_the_join_is_counted_and_not_joined_again():
    joiner = LabelJoiner()
    joiner.add_prediction(prediction("c3"), offset=0)
    assert joiner.add_label(label("c3", 1.0), offset=0)[0] is LabelOutcome.JOINED

    assert joiner.add_label(label("c3", 2.0), offset=1) == (LabelOutcome.DUPLICATE, None)

    assert joiner.stats.duplicate_labels == 1
    assert joiner.stats.joined == 1
    assert joiner.pending_labels == 0  # the duplicate does not wait for a second prediction


def test_duplicate_label_while_the_first_waits_is_counted_and_joined_once():
    joiner = LabelJoiner()
    assert joiner.add_label(label("d4", 1.0, value=1), offset=0)[0] is LabelOutcome.PENDING
    assert joiner.add_label(label("d4", 2.0, value=0), offset=1) == (LabelOutcome.DUPLICATE, None)
    assert joiner.stats.duplicate_labels == 1
    assert joiner.pending_labels == 1

    outcome, example = joiner.add_prediction(prediction("d4"), offset=0)

    assert outcome is PredictionOutcome.JOINED
    assert example is not None and example.label == 1  # the label that waited, not the duplicate
    assert joiner.stats.joined == 1
    assert joiner.pending_labels == 0
    # And a third copy after the join is a duplicate as well.
    assert joiner.add_label(label("d4", 3.0), offset=2)[0] is LabelOutcome.DUPLICATE
    assert joiner.stats.duplicate_labels == 2 and joiner.stats.joined == 1


def test_duplicate_prediction_is_counted_while_pending_and_after_the_join():
    joiner = LabelJoiner()
    assert joiner.add_prediction(prediction("e5"), offset=0)[0] is PredictionOutcome.PENDING
    assert joiner.add_prediction(prediction("e5"), offset=1) == (PredictionOutcome.DUPLICATE, None)
    assert joiner.stats.duplicate_predictions == 1
    assert joiner.pending_predictions == 1

    assert joiner.add_label(label("e5", 5.0), offset=0)[0] is LabelOutcome.JOINED
    assert joiner.add_prediction(prediction("e5"), offset=2) == (PredictionOutcome.DUPLICATE, None)

    assert joiner.stats.duplicate_predictions == 2
    assert joiner.stats.joined == 1
    assert joiner.pending_predictions == 0


# -- time to live (event time) ------------------------------------------------------------------------------


def test_watermark_is_the_event_time_both_sides_have_reached():
    """As documented: the smaller of the two sides' largest timestamps, -inf until both sides were seen."""
    joiner = LabelJoiner()
    assert joiner.watermark == -math.inf
    joiner.add_prediction(prediction("f1", 100.0), offset=0)
    assert joiner.watermark == -math.inf  # no label seen yet
    joiner.add_label(label("f2", 40.0), offset=0)
    assert joiner.watermark == at(40.0).timestamp()
    joiner.add_prediction(prediction("f3", 20.0), offset=1)  # older: a side's event time does not go back
    assert joiner.watermark == at(40.0).timestamp()
    joiner.add_label(label("f4", 130.0), offset=1)
    assert joiner.watermark == at(100.0).timestamp()


def test_prediction_expires_once_timestamp_plus_ttl_reaches_the_watermark():
    joiner = LabelJoiner(prediction_ttl_s=60.0, label_ttl_s=1_000.0)
    p = prediction("g1", 0.0)
    joiner.add_prediction(p, offset=5)

    watermark_to(joiner, 59.0, "clock-1")  # 0 + 60 > 59: still within its TTL
    early = joiner.expire()
    assert early.predictions == [] and early.labels == []
    assert joiner.pending_predictions == 2 and joiner.stats.expired_predictions == 0

    watermark_to(joiner, 60.0, "clock-2")  # 0 + 60 <= 60: due
    expired = joiner.expire()

    assert expired.predictions == [p]
    assert expired.labels == []
    assert joiner.stats.expired_predictions == 1
    assert joiner.pending_predictions == 2  # the two younger ones stay
    assert joiner.pending_labels == 2
    assert joiner.stats.unmatched_labels == 0 and joiner.stats.evicted == 0


def test_expired_prediction_no_longer_joins():
    joiner = LabelJoiner(prediction_ttl_s=10.0)
    joiner.add_prediction(prediction("g2", 0.0), offset=0)
    watermark_to(joiner, 10.0)
    assert [p.prediction_id for p in joiner.expire().predictions] == ["g2"]

    outcome, example = joiner.add_label(label("g2", 11.0), offset=0)

    assert outcome is LabelOutcome.PENDING and example is None
    assert joiner.stats.joined == 0


def test_expire_takes_out_an_expired_prediction_behind_a_younger_one():
    """Event times are not in offset order: an entry past its TTL leaves even when a younger one came first."""
    joiner = LabelJoiner(prediction_ttl_s=60.0)
    young = prediction("h-young", 50.0)
    old = prediction("h-old", 0.0)
    joiner.add_prediction(young, offset=0)
    joiner.add_prediction(old, offset=1)  # arrives later with an older event time
    watermark_to(joiner, 60.0)  # old is due (0 + 60 <= 60), young is not (50 + 60 > 60)

    expired = joiner.expire()

    assert expired.predictions == [old]
    assert joiner.stats.expired_predictions == 1
    assert joiner.pending_predictions == 2  # young and the clock's prediction


def test_label_waiting_past_its_ttl_is_returned_with_its_offset():
    joiner = LabelJoiner(prediction_ttl_s=10_000.0, label_ttl_s=30.0)
    stale = label("i1", 0.0)
    fresh = label("i2", 20.0)
    joiner.add_label(stale, offset=17)
    joiner.add_label(fresh, offset=18)

    watermark_to(joiner, 29.0)
    assert joiner.expire().labels == []
    assert joiner.stats.unmatched_labels == 0

    watermark_to(joiner, 30.0, "clock-2")
    expired = joiner.expire()

    assert expired.labels == [(stale, 17)]
    assert expired.predictions == []
    assert joiner.stats.unmatched_labels == 1
    assert joiner.pending_labels == 3  # i2 (due at 50) and the two clock labels


def test_labels_do_not_expire_before_the_prediction_stream_passes_their_deadline():
    """As documented: a labels topic read ahead of the predictions topic does not throw labels away."""
    joiner = LabelJoiner(prediction_ttl_s=10_000.0, label_ttl_s=30.0)
    waiting = label("q1", 0.0)
    joiner.add_label(waiting, offset=3)
    joiner.add_label(label("q-ahead", 500.0), offset=4)  # the label side is far ahead
    assert joiner.expire().labels == []  # the prediction side has not been seen at all

    joiner.add_prediction(prediction("q-p1", 29.0), offset=0)
    assert joiner.expire().labels == []

    joiner.add_prediction(prediction("q-p2", 30.0), offset=1)
    assert joiner.expire().labels == [(waiting, 3)]


# -- the cap ------------------------------------------------------------------------------------------------


def test_cap_evicts_the_oldest_predictions():
    joiner = LabelJoiner(max_pending=3)
    predictions = [prediction(f"j{i}", float(i)) for i in range(5)]
    for offset, p in enumerate(predictions):
        joiner.add_prediction(p, offset=100 + offset)
    assert joiner.pending_predictions == 5  # the cap is enforced by expire()

    expired = joiner.expire()

    assert expired.predictions == predictions[:2]
    assert joiner.stats.evicted == 2
    assert joiner.pending_predictions == 3
    assert joiner.oldest_pending_offsets() == (102, None)


def test_cap_evicts_the_oldest_labels():
    joiner = LabelJoiner(max_pending=2)
    labels = [label(f"k{i}", float(i)) for i in range(4)]
    for offset, lab in enumerate(labels):
        joiner.add_label(lab, offset=offset)

    expired = joiner.expire()

    assert expired.labels == [(labels[0], 0), (labels[1], 1)]
    assert joiner.stats.evicted == 2
    assert joiner.stats.unmatched_labels == 2  # evicted labels never met their prediction
    assert joiner.pending_labels == 2


def test_cap_counts_both_sides_together():
    joiner = LabelJoiner(max_pending=4)
    for i in range(4):
        joiner.add_prediction(prediction(f"m-p{i}", float(i)), offset=i)
        joiner.add_label(label(f"m-l{i}", float(i)), offset=i)
    assert joiner.pending_predictions + joiner.pending_labels == 8

    joiner.expire()

    assert joiner.pending_predictions + joiner.pending_labels == 4
    assert joiner.stats.evicted == 4


def test_cap_ignores_entries_that_joined():
    joiner = LabelJoiner(max_pending=2)
    for i in range(3):
        joiner.add_prediction(prediction(f"n{i}", float(i)), offset=i)
    joiner.add_label(label("n0", 5.0), offset=0)  # n0 joins: 2 left, at the cap

    expired = joiner.expire()

    assert expired.predictions == [] and joiner.stats.evicted == 0
    assert joiner.pending_predictions == 2


# -- offsets safe to commit ---------------------------------------------------------------------------------


def test_oldest_pending_offsets_follow_joins_and_expiry():
    joiner = LabelJoiner(prediction_ttl_s=100.0, label_ttl_s=100.0)
    assert joiner.oldest_pending_offsets() == (None, None)

    joiner.add_prediction(prediction("o1", 0.0), offset=10)
    joiner.add_prediction(prediction("o2", 1.0), offset=11)
    joiner.add_label(label("o9", 2.0), offset=5)  # its prediction has not come yet
    assert joiner.oldest_pending_offsets() == (10, 5)

    joiner.add_label(label("o1", 3.0), offset=6)  # joins o1 at once
    assert joiner.oldest_pending_offsets() == (11, 5)

    joiner.add_prediction(prediction("o9", 4.0), offset=12)  # joins the waiting label
    assert joiner.oldest_pending_offsets() == (11, None)

    joiner.add_label(label("o2", 90.0), offset=7)
    assert joiner.oldest_pending_offsets() == (None, None)

    joiner.add_prediction(prediction("o3", 95.0), offset=13)
    assert joiner.oldest_pending_offsets() == (13, None)
    joiner.add_label(label("o-late", 195.0), offset=8)
    joiner.add_prediction(prediction("o4", 195.0), offset=14)  # both sides at 195: o3 (95 + 100) is due
    assert [p.prediction_id for p in joiner.expire().predictions] == ["o3"]
    assert joiner.oldest_pending_offsets() == (14, 8)


def test_commit_offsets_never_split_a_join_between_the_two_topics():
    joiner = LabelJoiner(prediction_ttl_s=100.0, label_ttl_s=100.0)
    joiner.add_label(label("w", 0.0), offset=3)  # waits: the labels' commit stays at 3
    joiner.add_prediction(prediction("a", 1.0), offset=20)
    joiner.add_label(label("a", 2.0), offset=4)  # joins a: (20, 4), its label past the labels' commit
    joiner.add_prediction(prediction("b", 3.0), offset=21)
    joiner.add_label(label("b", 4.0), offset=5)  # (21, 5)
    joiner.add_prediction(prediction("c", 5.0), offset=22)  # waits
    # Without the pairs, predictions would commit at 22 and labels at 3: after a crash labels a and b would be
    # read again without their predictions. With them, predictions commit no further than a's.
    assert joiner.oldest_pending_offsets() == (22, 3)
    assert joiner.commit_offsets(prediction_position=23, label_position=6) == (20, 3)
    joiner.settle(20, 3)
    assert joiner.unsettled_ids() == [("churn", "a"), ("churn", "b")]

    joiner.add_prediction(prediction("w", 6.0), offset=23)  # the waiting label joins: nothing waits on labels
    joiner.add_label(label("c", 7.0), offset=6)  # and c joins
    assert joiner.commit_offsets(prediction_position=24, label_position=7) == (24, 7)
    assert joiner.unsettled_joins == 4  # until the commit is made
    joiner.settle(24, 7)
    assert joiner.unsettled_joins == 0  # every join is behind both commits: forgotten


def test_commit_offsets_tighten_both_sides_until_stable():
    """A pending prediction holds a label back, whose join holds another prediction back, and so on."""
    joiner = LabelJoiner(prediction_ttl_s=100.0, label_ttl_s=100.0)
    joiner.add_prediction(prediction("p0", 0.0), offset=0)  # waits: predictions commit at 0 at most
    joiner.add_label(label("x", 1.0), offset=10)
    joiner.add_prediction(prediction("x", 1.0), offset=1)  # (1, 10): its prediction is past 0, so labels <= 10
    joiner.add_prediction(prediction("y", 2.0), offset=2)
    joiner.add_label(label("y", 2.0), offset=11)  # (2, 11)
    assert joiner.commit_offsets(prediction_position=3, label_position=12) == (0, 10)

    joiner.add_label(label("p0", 3.0), offset=12)  # (0, 12): the oldest prediction joins last
    assert joiner.commit_offsets(prediction_position=3, label_position=13) == (3, 13)
    joiner.settle(3, 13)
    assert joiner.unsettled_joins == 0


def test_without_pairing_each_topic_commits_up_to_its_own_oldest_waiting_record():
    joiner = LabelJoiner(prediction_ttl_s=100.0, label_ttl_s=100.0, pair_commits=False)
    joiner.add_label(label("w", 0.0), offset=3)  # waits
    joiner.add_prediction(prediction("a", 1.0), offset=20)
    joiner.add_label(label("a", 2.0), offset=4)  # (20, 4)
    joiner.add_prediction(prediction("c", 5.0), offset=22)  # waits
    assert joiner.commit_offsets(prediction_position=23, label_position=6) == (22, 3)  # paired: (20, 3)
    joiner.settle(22, 3)
    assert joiner.unsettled_ids() == [("churn", "a")]  # its label is read again after a crash: a restart must know it


def test_a_steady_stream_with_labels_out_of_order_commits_as_it_goes_only_without_pairing():
    """Labels 1 to 200 records late: paired commits chain back through overlapping joins to the first record."""
    rng = random.Random(11)
    joiners = {pair: LabelJoiner(prediction_ttl_s=1e6, label_ttl_s=1e6, pair_commits=pair) for pair in (True, False)}
    commits: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    due: list[tuple[int, str]] = []
    labels_sent = 0
    for n in range(3_000):
        for joiner in joiners.values():
            joiner.add_prediction(prediction(f"p{n}", float(n)), offset=n)
        due.append((n + rng.randint(1, 200), f"p{n}"))
        due.sort()
        while due and due[0][0] <= n:
            _, prediction_id = due.pop(0)
            for joiner in joiners.values():
                joiner.add_label(label(prediction_id, float(n)), offset=labels_sent)
            labels_sent += 1
        if n % 100 == 99:
            for pair, joiner in joiners.items():
                offsets = joiner.commit_offsets(n + 1, labels_sent)
                joiner.settle(*offsets)
                commits[pair].append(offsets)
    assert commits[True][-1] == (0, 0)  # stuck at the start: every commit would re-read the whole stream
    assert joiners[True].unsettled_joins > 2_500
    for (predictions, labels), n in zip(commits[False], range(99, 3_000, 100), strict=True):
        assert n + 1 - 201 <= predictions <= n + 1  # no further back than the longest label delay
        assert labels >= predictions - 201
    assert joiners[False].unsettled_joins < 400


def test_restored_joins_are_duplicates_when_read_again():
    joiner = LabelJoiner(remember_joined=2)
    joiner.restore_joined([("churn", "r1"), ("churn", "r2"), ("churn", "r3")])  # more than remember_joined: all kept
    assert joiner.add_prediction(prediction("r1"), offset=0) == (PredictionOutcome.DUPLICATE, None)
    assert joiner.add_label(label("r3"), offset=0) == (LabelOutcome.DUPLICATE, None)
    assert joiner.add_label(label("r2", model="fraud"), offset=1)[0] is LabelOutcome.PENDING  # another model's
    outcome, example = joiner.add_prediction(prediction("new"), offset=1)
    assert outcome is PredictionOutcome.PENDING and example is None
    assert joiner.add_label(label("new"), offset=2)[0] is LabelOutcome.JOINED
    assert joiner.unsettled_ids() == [("churn", "new")] and joiner.stats.duplicate_predictions == 1


def test_joins_restored_from_a_snapshot_of_prediction_ids_alone_match_that_id_for_every_model():
    joiner = LabelJoiner()
    joiner.restore_joined(["r1"])  # written before join keys held the model
    assert joiner.add_prediction(prediction("r1"), offset=0)[0] is PredictionOutcome.DUPLICATE
    assert joiner.add_label(label("r1", model="fraud"), offset=0)[0] is LabelOutcome.DUPLICATE


def test_two_models_scoring_the_same_order_each_join_their_own_label():
    """A business id (order-42) as the prediction id of two models in one partition."""
    joiner = LabelJoiner()
    assert joiner.add_prediction(prediction("order-42", 1.0, value=1, model="fraud"), offset=0)[0] is (
        PredictionOutcome.PENDING
    )
    assert joiner.add_prediction(prediction("order-42", 1.0, value=0, model="churn"), offset=1)[0] is (
        PredictionOutcome.PENDING
    )  # not a duplicate of fraud's
    outcome, churn = joiner.add_label(label("order-42", 2.0, value=1, model="churn"), offset=0)
    assert outcome is LabelOutcome.JOINED and churn is not None
    assert (churn.model_id, churn.prediction, churn.label) == ("churn", 0, 1)
    outcome, fraud = joiner.add_label(label("order-42", 3.0, value=0, model="fraud"), offset=1)
    assert outcome is LabelOutcome.JOINED and fraud is not None
    assert (fraud.model_id, fraud.prediction, fraud.label) == ("fraud", 1, 0)
    # Each model's prediction and label are now duplicates of its own join only.
    assert joiner.add_label(label("order-42", 4.0, model="churn"), offset=2)[0] is LabelOutcome.DUPLICATE
    assert joiner.add_prediction(prediction("order-42", 4.0, model="fraud"), offset=2)[0] is (
        PredictionOutcome.DUPLICATE
    )
    assert joiner.unsettled_ids() == [("churn", "order-42"), ("fraud", "order-42")]
    assert joiner.stats.joined == 2


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prediction_ttl_s": 0.0},
        {"prediction_ttl_s": -1.0},
        {"label_ttl_s": 0.0},
        {"label_ttl_s": -600.0},
        {"max_pending": 0},
        {"max_pending": -5},
        {"remember_joined": -1},
    ],
)
def test_constructor_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        LabelJoiner(**kwargs)


@pytest.mark.parametrize("kwargs", [{"prediction_ttl_s": math.nan}, {"label_ttl_s": math.nan}])
def test_constructor_refuses_a_nan_ttl(kwargs):
    """A NaN TTL would never expire anything (nothing compares <= NaN)."""
    with pytest.raises(ValueError):
        LabelJoiner(**kwargs)


def test_constructor_accepts_sensible_values():
    joiner = LabelJoiner(prediction_ttl_s=0.5, label_ttl_s=1.0, max_pending=1, remember_joined=0)
    assert joiner.max_pending == 1 and joiner.remember_joined == 0
