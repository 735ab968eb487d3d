"""Detector state snapshots: a restored watch decides exactly as one that never stopped; bad snapshots are refused."""

from __future__ import annotations

import pickle

import pytest

from retrain.consumers.changelog import CHUNKED, ChangelogAssembler, changelog_records
from retrain.decisions.checkpoint import (
    MAGIC,
    Snapshot,
    SnapshotRefused,
    decode_snapshot,
    encode_snapshot,
    read_header,
    snapshot_key,
    unpickle_state,
)
from retrain.decisions.policy import ModelWatch, PolicyConfig
from retrain.schemas import RetrainReason
from tests.helpers.policy_stream import SEED, stream

KEY = snapshot_key(b"k" * 32)
RIVER = "0.26.1"


def decisions(watch: ModelWatch, examples, start: int) -> list[tuple[int, str, int | None, float]]:
    out = []
    for i, example in enumerate(examples, start):
        event = watch.observe(example)
        if event is not None:
            out.append((i, event.reason.value, event.suggested_window.last_n, event.evidence.values["change_at"]))
    return out


@pytest.mark.parametrize("split", [4_000, 5_100, 7_000])  # before the drift, just after it, mid-episode
def test_a_restored_watch_makes_exactly_the_decisions_of_one_that_never_stopped(split):
    examples, _ = stream(SEED, ((0.1, 5_000), (0.4, 10_000)))
    config = PolicyConfig(relative_drop=None, cooldown_s=10**9)
    uninterrupted = ModelWatch("churn", config, version=1)
    expected = decisions(uninterrupted, examples, 0)
    assert [reason for _, reason, _, _ in expected] == ["drift", "drift", "drift"]  # one episode, three fits

    before = ModelWatch("churn", config, version=1)
    first = decisions(before, examples[:split], 0)
    data = encode_snapshot(Snapshot(2, {"churn": before}, ["p-1", "p-2"]), KEY, RIVER)
    restored = decode_snapshot(data, KEY, RIVER)
    assert restored.partition == 2 and restored.joined == ["p-1", "p-2"]
    assert restored.watches["churn"] is not before
    assert first + decisions(restored.watches["churn"], examples[split:], split) == expected


def test_a_state_pickled_when_the_event_models_were_the_top_level_schemas_package_still_restores():
    examples, _ = stream(SEED, ((0.1, 5_000), (0.4, 10_000)))
    config = PolicyConfig(relative_drop=None, cooldown_s=10**9)
    uninterrupted = ModelWatch("churn", config, version=1)
    expected = decisions(uninterrupted, examples, 0)
    before = ModelWatch("churn", config, version=1)
    first = decisions(before, examples[:7_000], 0)  # mid-episode: the watch holds a RetrainReason
    # Protocol 2 names each class in a text line: rename the module as an older install wrote it.
    old = pickle.dumps({"watches": {"churn": before}, "joined": []}, protocol=2).replace(
        b"retrain.schemas.", b"schemas."
    )
    assert b"retrain.schemas" not in old and b"schemas.events" in old
    watch = unpickle_state(old)["watches"]["churn"]
    assert watch.episode is not None and watch.episode.reason is RetrainReason.DRIFT
    assert first + decisions(watch, examples[7_000:], 7_000) == expected


def test_a_snapshot_is_compressed_and_its_header_says_what_is_inside():
    examples, _ = stream(SEED, ((0.1, 20_000),))
    watch = ModelWatch("churn", PolicyConfig(), version=1)
    decisions(watch, examples, 0)
    data = encode_snapshot(Snapshot(0, {"churn": watch}, []), KEY, RIVER)
    assert len(data) < len(pickle.dumps(watch)) / 4  # 10,000 0/1 errors of history compress well
    header, _ = read_header(data, KEY)
    assert header == {"format": 1, "river": RIVER, "partition": 0, "models": ["churn"], "joined": 0}


class Planted:
    """Unpickling this records that it happened: a refused snapshot must never get that far."""

    unpickled = 0

    def __reduce__(self):
        return (_mark, ())


def _mark():
    Planted.unpickled += 1
    return None


def test_an_altered_snapshot_or_another_key_is_refused_before_unpickling():
    data = bytearray(encode_snapshot(Snapshot(1, {"planted": Planted()}, []), KEY, RIVER))  # type: ignore[dict-item]
    Planted.unpickled = 0
    assert decode_snapshot(bytes(data), KEY, RIVER).watches == {"planted": None}
    assert Planted.unpickled == 1  # the control: a genuine snapshot is unpickled

    Planted.unpickled = 0
    altered = bytes(data[:-1]) + bytes([data[-1] ^ 1])
    with pytest.raises(SnapshotRefused) as refused:
        decode_snapshot(altered, KEY, RIVER)
    assert refused.value.reason == "bad_signature"
    with pytest.raises(SnapshotRefused) as refused:
        decode_snapshot(bytes(data), snapshot_key(b"another key, also 32 bytes long!"), RIVER)
    assert refused.value.reason == "bad_signature"
    with pytest.raises(SnapshotRefused) as refused:
        decode_snapshot(b'{"schema_version": 1}', KEY, RIVER)
    assert refused.value.reason == "not_a_snapshot"
    with pytest.raises(SnapshotRefused) as refused:
        decode_snapshot(MAGIC + b"\x00" * 10, KEY, RIVER)
    assert refused.value.reason == "not_a_snapshot"
    assert Planted.unpickled == 0


def test_a_snapshot_of_another_river_version_is_refused_with_a_clear_message():
    data = encode_snapshot(Snapshot(3, {"planted": Planted()}, []), KEY, "0.25.0")  # type: ignore[dict-item]
    Planted.unpickled = 0
    with pytest.raises(SnapshotRefused) as refused:
        decode_snapshot(data, KEY, RIVER)
    assert refused.value.reason == "river_version"
    assert "written with River 0.25.0" in str(refused.value) and f"runs River {RIVER}" in str(refused.value)
    assert Planted.unpickled == 0


def latest(partition: int, records) -> bytes | None:
    assembler = ChangelogAssembler(partition)
    for key, value in records:
        assembler.add(key, value)
    return assembler.latest()


def test_a_snapshot_that_fits_is_one_record_under_its_partition_number():
    assert changelog_records(4, b"x" * 10, max_record_bytes=10) == [(b"4", b"x" * 10)]


def test_a_large_snapshot_is_written_in_chunks_then_a_manifest_and_read_back_whole():
    data = bytes(range(256)) * 10  # 2,560 bytes
    records = changelog_records(3, data, max_record_bytes=1_000)
    assert [key for key, _ in records] == [b"3.0", b"3.1", b"3.2", b"3"]
    assert [len(value) for _, value in records[:3]] == [1_000, 1_000, 560]
    assert records[3][1].startswith(CHUNKED)
    assert latest(3, records) == data
    # Another partition's records (also a key that merely starts with "3") are not mixed in.
    other = changelog_records(33, b"y" * 2_500, max_record_bytes=1_000)
    assert latest(3, records + other) == data
    assert latest(33, records + other) == b"y" * 2_500


def test_the_latest_snapshot_wins_and_stale_chunk_keys_get_tombstones():
    big, small = b"a" * 2_500, b"b" * 500
    first = changelog_records(0, big, max_record_bytes=1_000)
    assembler = ChangelogAssembler(0)
    for key, value in first:
        assembler.add(key, value)
    assert assembler.chunk_keys == 3
    second = changelog_records(0, small, max_record_bytes=1_000, stale_chunks=assembler.chunk_keys)
    assert second == [(b"0.0", None), (b"0.1", None), (b"0.2", None), (b"0", small)]
    for key, value in second:
        assembler.add(key, value)
    assert assembler.latest() == small and assembler.chunk_keys == 0
    # Compaction keeps the last record of each key, in order: the same answer.
    compacted = list({key: (key, value) for key, value in first + second}.values())
    assert latest(0, compacted) == small


def test_chunks_of_a_snapshot_whose_manifest_was_never_written_are_not_mixed_in():
    first = changelog_records(1, b"a" * 2_500, max_record_bytes=1_000)
    interrupted = changelog_records(1, b"b" * 2_500, max_record_bytes=1_000)[:2]  # crashed before chunk 2
    assert latest(1, first + interrupted) == b"a" * 2_500


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda records: [r for r in records if r[0] != b"5.1"], "chunks [1] of 3 are missing"),
        (lambda records: [(k, v[:-1] + b"?" if k == b"5.2" else v) for k, v in records], "do not add up"),
        (lambda records: [*records[:-1], (b"5", CHUNKED + b"{not json")], "manifest is unreadable"),
    ],
    ids=["missing-chunk", "altered-chunk", "bad-manifest"],
)
def test_a_manifest_whose_chunks_do_not_add_up_is_refused_as_incomplete(damage, says):
    records = damage(changelog_records(5, b"z" * 2_500, max_record_bytes=1_000))
    with pytest.raises(SnapshotRefused) as refused:
        latest(5, records)
    assert refused.value.reason == "incomplete"
    assert says in str(refused.value)


def test_a_tombstone_under_the_partition_number_means_no_snapshot():
    records = changelog_records(2, b"a" * 2_500, max_record_bytes=1_000)
    assert latest(2, [*records, (b"2", None)]) is None
