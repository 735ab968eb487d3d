"""StoredJoiner and PartitionStore: the join held on disk decides as the in-RAM LabelJoiner does, and survives
a restart (reopened store) or a lost disk (rebuilt from its changelog records)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from retrain.decisions.join import LabelJoiner, LabelOutcome, PredictionOutcome
from retrain.schemas import LabelEvent, PredictionEvent, encode
from retrain.state.join import INDEX_PREFIXES, StoredJoiner, index_keys
from retrain.state.store import META_KEY, PartitionStore, StoreUnusable
from tests.helpers.join_records import label, prediction


@pytest.fixture
def store(tmp_path: Path):
    store = PartitionStore(tmp_path / "predictions-0", index_keys, INDEX_PREFIXES)
    yield store
    store.close()


def everything(store: PartitionStore) -> dict[bytes, bytes]:
    """The written content, local-only keys left out."""
    return {k: v for k, v in store.scan(b"") if not k.startswith(b"\x00\x00")}


def ids(expired) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    return (
        sorted((p.model_id, p.prediction_id) for p in expired.predictions),
        sorted((lab.model_id, lab.prediction_id, offset) for lab, offset in expired.labels),
    )


def random_stream(seed: int, count: int) -> list[tuple[str, PredictionEvent | LabelEvent, int]]:
    """Predictions, their labels up to 400 s (event time) later and out of order, some never labeled, some
    labels without a prediction, duplicates of both sides, two models sharing prediction ids."""
    rng = random.Random(seed)
    events: list[tuple[float, str, PredictionEvent | LabelEvent]] = []
    for i in range(count):
        at, model, pid = float(i), rng.choice(["churn", "fraud"]), f"order-{rng.randrange(count)}"
        events.append((at, "p", prediction(pid, at, model=model, value=rng.randrange(2))))
        if rng.random() < 0.05:
            events.append((at + rng.uniform(0, 5), "p", prediction(pid, at, model=model)))  # a duplicate
        if rng.random() < 0.85:
            delay = rng.choice([rng.uniform(0, 20), rng.uniform(0, 400)])
            events.append((at + delay, "l", label(pid, at + delay, model=model, value=rng.randrange(2))))
            if rng.random() < 0.05:
                events.append((at + delay + 1, "l", label(pid, at + delay + 1, model=model)))
        if rng.random() < 0.03:
            events.append((at - rng.uniform(0, 30), "l", label(f"stray-{i}", max(0.0, at - 30), model=model)))
    events.sort(key=lambda e: e[0])
    offsets = {"p": 0, "l": 0}
    out = []
    for _, side, event in events:
        out.append((side, event, offsets[side]))
        offsets[side] += 1
    return out


# -- the same decisions as LabelJoiner ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decides_exactly_as_the_in_memory_joiner_on_a_random_stream(store: PartitionStore, seed: int):
    """Outcome, labeled example, expiry and counts after every record and batch, against LabelJoiner."""
    memory = LabelJoiner(prediction_ttl_s=120.0, label_ttl_s=60.0, max_pending=10**9, remember_joined=10**9)
    stored = StoredJoiner(store, prediction_ttl_s=120.0, label_ttl_s=60.0, max_pending=10**9, remember_joined=10**9)
    stream = random_stream(seed, 3_000)
    outcomes = {"joined": 0, "duplicate": 0, "expired": 0}
    for start in range(0, len(stream), 97):  # poll batches
        for side, event, offset in stream[start : start + 97]:
            if side == "p":
                assert isinstance(event, PredictionEvent)
                expected = memory.add_prediction(event, offset)
                assert stored.add_prediction(event, offset, raw=encode(event)) == expected
            else:
                assert isinstance(event, LabelEvent)
                expected = memory.add_label(event, offset)
                assert stored.add_label(event, offset, raw=encode(event)) == expected
            outcomes["joined" if expected[1] is not None else expected[0].value] = (
                outcomes.get("joined" if expected[1] is not None else expected[0].value, 0) + 1
            )
        store.write()
        expired = memory.expire()
        assert ids(stored.expire()) == ids(expired)
        store.write()
        outcomes["expired"] += len(expired.predictions) + len(expired.labels)
        assert (stored.pending_predictions, stored.pending_labels) == (
            memory.pending_predictions,
            memory.pending_labels,
        )
    assert stored.stats == memory.stats
    assert min(outcomes.values()) > 50, outcomes  # the stream exercised every path


def test_a_stored_prediction_comes_back_as_it_was_sent(store: PartitionStore):
    joiner = StoredJoiner(store)
    sent = prediction("a1", 10.0, version=7, value="churns")
    joiner.add_prediction(sent, offset=3, raw=encode(sent))
    store.write()
    outcome, example = joiner.add_label(label("a1", 95.5, value="stays"), offset=8)
    assert outcome is LabelOutcome.JOINED and example is not None
    assert (example.model_version, example.features, example.prediction, example.prediction_timestamp) == (
        7,
        sent.features,
        "churns",
        sent.timestamp,
    )
    assert example.label == "stays"


def test_joined_keys_are_remembered_up_to_their_bound_a_batch_at_a_time(store: PartitionStore):
    """Each batch's joins travel as one record; the oldest records are forgotten while at least ``remember_joined``
    joins stay remembered."""
    joiner = StoredJoiner(store, remember_joined=3)
    for batch in range(3):
        pair = (2 * batch, 2 * batch + 1)
        for i in pair:
            joiner.add_prediction(prediction(f"r{i}", float(i)), offset=i)
        store.write()
        for i in pair:
            joiner.add_label(label(f"r{i}", float(i)), offset=i)
        records = store.changelog_records()
        assert [key[:1] for key, _ in records] == [b"P", b"B", b"P", b"\x00"]  # the two tombstones, one B record
        store.write()
    joiner.expire()  # 6 remembered: forgets the oldest record (2 joins); forgetting the next would leave 2 < 3
    records = store.changelog_records()
    assert [(key[:1], value) for key, value in records[:-1]] == [(b"B", None)]
    store.write()
    assert store.meta["count"]["J"] == 4
    for i in (5, 4, 3, 2):
        assert joiner.add_label(label(f"r{i}", 9.0), offset=10 + i)[0] is LabelOutcome.DUPLICATE
    assert joiner.add_label(label("r1", 9.0), offset=9)[0] is LabelOutcome.PENDING


def test_a_key_added_and_taken_out_in_one_batch_never_reaches_the_changelog(store: PartitionStore):
    joiner = StoredJoiner(store)
    joiner.add_prediction(prediction("quick"), offset=0)
    joiner.add_label(label("quick"), offset=0)
    assert [key[:1] for key, _ in store.changelog_records()] == [b"B", b"\x00"]
    store.write()
    assert joiner.pending_predictions == 0 and store.get(b"Pchurn\x00quick") is None
    assert joiner.add_prediction(prediction("quick"), offset=1)[0] is PredictionOutcome.DUPLICATE


# -- the cap and bounded sweeps -----------------------------------------------------------------------------


def test_the_cap_evicts_the_oldest_arrivals_of_both_sides(store: PartitionStore):
    joiner = StoredJoiner(store, max_pending=3)
    joiner.add_prediction(prediction("p0", 0.0), offset=0)
    joiner.add_label(label("l0", 0.0), offset=0)
    joiner.add_prediction(prediction("p1", 1.0), offset=1)
    joiner.add_label(label("l1", 1.0), offset=1)
    joiner.add_prediction(prediction("p2", 2.0), offset=2)
    store.write()

    expired = joiner.expire()

    assert ids(expired) == ([("churn", "p0")], [("churn", "l0", 0)])
    assert joiner.stats.evicted == 2 and joiner.stats.unmatched_labels == 1
    assert (joiner.pending_predictions, joiner.pending_labels) == (2, 1)


def test_expiry_is_swept_in_bounded_batches(store: PartitionStore):
    joiner = StoredJoiner(store, prediction_ttl_s=10.0, sweep_limit=400)
    for i in range(1_000):
        joiner.add_prediction(prediction(f"e{i}", float(i % 5)), offset=i)
    joiner.add_prediction(prediction("late", 100.0), offset=1_000)
    joiner.add_label(label("unrelated", 100.0), offset=0)
    store.write()
    taken = []
    for _ in range(3):
        taken.append(len(joiner.expire().predictions))
        store.write()
    assert taken == [400, 400, 200]
    assert joiner.pending_predictions == 1 and joiner.stats.expired_predictions == 1_000


def test_an_entry_older_than_what_was_swept_still_expires(store: PartitionStore):
    """Sweeps start where the last one ended; a record arriving with an older deadline moves that start back."""
    joiner = StoredJoiner(store, prediction_ttl_s=10.0, label_ttl_s=10.0)
    joiner.add_prediction(prediction("now", 500.0), offset=0)
    joiner.add_label(label("clock", 500.0), offset=0)
    store.write()
    assert joiner.expire().predictions == []  # swept up to the watermark, 500 s
    store.write()
    joiner.add_prediction(prediction("old", 1.0), offset=1)  # deadline 11 s, long passed
    store.write()
    assert [p.prediction_id for p in joiner.expire().predictions] == ["old"]
    store.write()
    joiner = StoredJoiner(store, prediction_ttl_s=10.0, label_ttl_s=10.0)  # a restart keeps the sweep's start
    joiner.add_prediction(prediction("older", 0.5), offset=2)
    store.write()
    assert [p.prediction_id for p in joiner.expire().predictions] == ["older"]


def test_what_a_batch_staged_is_swept_once_written(store: PartitionStore):
    joiner = StoredJoiner(store, prediction_ttl_s=10.0)
    joiner.add_prediction(prediction("x", 0.0), offset=0)
    joiner.add_label(label("y", 50.0), offset=0)
    joiner.add_prediction(prediction("z", 50.0), offset=1)
    assert joiner.expire().predictions == []  # staged, not written yet
    store.write()
    assert [p.prediction_id for p in joiner.expire().predictions] == ["x"]


# -- restarts, rollbacks, changelogs ------------------------------------------------------------------------


def test_a_reopened_store_carries_on_and_forgets_what_was_only_staged(tmp_path: Path):
    store = PartitionStore(tmp_path / "s", index_keys, INDEX_PREFIXES)
    joiner = StoredJoiner(store)
    joiner.add_prediction(prediction("kept"), offset=0)
    store.write(changelog_position=17)
    joiner.add_prediction(prediction("staged"), offset=1)
    store.close()  # a crash before the batch was written

    store = PartitionStore(tmp_path / "s", index_keys, INDEX_PREFIXES)
    joiner = StoredJoiner(store)
    assert store.changelog_position == 17 and joiner.pending_predictions == 1
    assert joiner.add_label(label("kept"), offset=0)[0] is LabelOutcome.JOINED
    assert joiner.add_label(label("staged"), offset=1)[0] is LabelOutcome.PENDING
    store.close()


def test_rollback_restores_the_last_written_state(store: PartitionStore):
    joiner = StoredJoiner(store)
    joiner.add_prediction(prediction("a"), offset=0)
    store.write()
    joiner.add_label(label("a"), offset=0)
    joiner.add_prediction(prediction("b"), offset=1)
    store.rollback()  # the batch was given up: it is read again
    joiner = StoredJoiner(store)
    assert (joiner.pending_predictions, joiner.pending_labels) == (1, 0)
    assert joiner.add_label(label("a"), offset=0)[0] is LabelOutcome.JOINED
    assert store.get(b"Pchurn\x00b") is None


def test_a_store_rebuilt_from_its_changelog_is_the_same_store(tmp_path: Path):
    """The changelog records of every batch (compacted: the last value per key) rebuild the state exactly."""
    original = PartitionStore(tmp_path / "original", index_keys, INDEX_PREFIXES)
    joiner = StoredJoiner(original, prediction_ttl_s=120.0, label_ttl_s=60.0)
    changelog: dict[bytes, bytes | None] = {}
    position = 0
    for start, chunk in enumerate(_chunks(random_stream(7, 1_500), 50)):
        for side, event, offset in chunk:
            add = joiner.add_prediction if side == "p" else joiner.add_label
            add(event, offset)  # type: ignore[arg-type]
        joiner.expire()
        original.meta["offsets"] = {"predictions": start, "labels": start}
        changes = original.changelog_records()
        assert changes[-1][0] == META_KEY
        assert not any(key.startswith(INDEX_PREFIXES) for key, _ in changes)  # rebuilt from the entries
        changelog.update(changes)
        position += len(changes)
        original.write(changelog_position=position)

    rebuilt = PartitionStore(tmp_path / "rebuilt", index_keys, INDEX_PREFIXES)
    records = [(k, v) for k, v in changelog.items() if v is not None]
    assert rebuilt.apply(records, changelog_position=position) == len(records)
    assert everything(rebuilt) == everything(original)
    assert rebuilt.changelog_position == position and rebuilt.meta == original.meta
    assert rebuilt.meta["offsets"] == {"predictions": start, "labels": start} and start > 20
    # And it goes on deciding alike.
    tail = [prediction("fresh", 2_000.0), label("fresh", 2_001.0)]
    for store in (original, rebuilt):
        j = StoredJoiner(store, prediction_ttl_s=120.0, label_ttl_s=60.0)
        assert j.add_prediction(tail[0], offset=10**6)[0] is PredictionOutcome.PENDING  # type: ignore[arg-type]
        assert j.add_label(tail[1], offset=10**6)[0] is LabelOutcome.JOINED  # type: ignore[arg-type]
        store.write()
        assert len(j.expire().predictions) > 0
        store.write()
    assert everything(rebuilt) == everything(original)
    original.close()
    rebuilt.close()


def test_a_store_behind_its_changelog_catches_up_deletes_included(tmp_path: Path):
    """A copy that holds the first half of the changelog applies the rest (joins and expiry: tombstones) and ends
    the same as the store that wrote it, its derived index keys included."""
    original = PartitionStore(tmp_path / "original", index_keys, INDEX_PREFIXES)
    joiner = StoredJoiner(original, prediction_ttl_s=120.0, label_ttl_s=60.0)
    batches = []
    for chunk in _chunks(random_stream(11, 1_000), 40):
        for side, event, offset in chunk:
            add = joiner.add_prediction if side == "p" else joiner.add_label
            add(event, offset)  # type: ignore[arg-type]
        joiner.expire()
        batches.append(original.changelog_records())
        original.write()
    behind = PartitionStore(tmp_path / "behind", index_keys, INDEX_PREFIXES)
    half = len(batches) // 2
    behind.apply([record for batch in batches[:half] for record in batch], changelog_position=half)
    tail = [record for batch in batches[half:] for record in batch]
    assert any(value is None for _, value in tail)
    behind.apply(tail, changelog_position=len(batches))
    assert everything(behind) == everything(original)
    original.close()
    behind.close()


def test_a_changelog_cannot_set_local_only_keys(store: PartitionStore):
    store.write(changelog_position=5)
    records = [(b"\x00\x00changelog-position", b"999"), (b"Dstray-index-key", b""), (b"Wmodel", b"v")]
    assert store.apply(records, changelog_position=6) == 1
    assert store.changelog_position == 6 and store.get(b"Wmodel") == b"v" and store.get(b"Dstray-index-key") is None


def test_a_corrupt_store_is_rebuilt_empty_and_says_why(tmp_path: Path):
    path = tmp_path / "s"
    store = PartitionStore(path)
    StoredJoiner(store).add_prediction(prediction("a"), offset=0)
    store.write(changelog_position=3)
    store.close()
    for name in path.iterdir():
        if name.name.startswith("CURRENT"):
            name.write_bytes(b"garbage\n")

    reopened = PartitionStore(path)
    assert reopened.rebuilt_reason is not None and "unreadable" in reopened.rebuilt_reason
    assert reopened.changelog_position == 0 and everything(reopened) == {}
    reopened.close()


def test_an_unwritable_state_directory_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StoreUnusable, match="cannot be created"):
        PartitionStore(blocker / "group" / "predictions-0")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prediction_ttl_s": 0.0},
        {"label_ttl_s": -1.0},
        {"prediction_ttl_s": math.nan},
        {"max_pending": 0},
        {"remember_joined": -1},
        {"sweep_limit": 0},
    ],
)
def test_constructor_refuses_nonsense(store: PartitionStore, kwargs):
    with pytest.raises(ValueError):
        StoredJoiner(store, **kwargs)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def test_a_scan_stays_within_its_prefix_and_bounds(store: PartitionStore):
    for key in (b"Da", b"Da\xff", b"Da\xff\xff", b"Db", b"Db\x00", b"E"):
        store.put(key, key)
    store.write()
    store.delete(b"Db\x00")  # staged deletes are skipped
    assert [k for k, _ in store.scan(b"Da")] == [b"Da", b"Da\xff", b"Da\xff\xff"]
    assert [k for k, _ in store.scan(b"Da\xff")] == [b"Da\xff", b"Da\xff\xff"]
    assert [k for k, _ in store.scan(b"D", start=b"Da\xff", below=b"Db\x01")] == [b"Da\xff", b"Da\xff\xff", b"Db"]
    assert [k for k, _ in store.scan(b"\xff")] == []


def test_appending_builds_one_record_and_a_delete_of_a_new_key_leaves_no_trace(store: PartitionStore):
    store.append(b"Bx", b"ab")
    store.append(b"Bx", b"cd")
    assert store.get(b"Bx") == b"abcd" and store.changelog_records()[0] == (b"Bx", b"abcd")
    store.append(b"Bx", b"ef")  # after the records were taken: it goes on from what they held
    store.put(b"Pnew", b"v", absent=True)
    store.delete(b"Pnew")
    store.put(b"Dlocal", b"", local=True)
    assert store.changelog_records()[:-1] == [(b"Bx", b"abcdef")]
    assert [key for key, _ in store.changes()[:-1]] == [b"Bx", b"Dlocal"]
    store.write()
    assert store.get(b"Bx") == b"abcdef" and store.get(b"Pnew") is None and store.get(b"Dlocal") == b""
    store.append(b"By", b"gone")
    store.delete(b"By")  # created and deleted in one batch: nothing of it is written
    assert store.changelog_records()[:-1] == [] and store.get(b"By") is None
