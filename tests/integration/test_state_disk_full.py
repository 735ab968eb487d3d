"""A full disk under the detector's on-disk state store (RETRAIN_DETECTOR_STATE_STORE=rocksdb, the default).

The promise: "Disk full or an unwritable state dir: a clear error, the service stops without committing past what it
stored, nothing lost."

The detector runs as a process whose file-size limit (RLIMIT_FSIZE) is small, with SIGXFSZ ignored: once a state
store's write-ahead log would grow past the limit, RocksDB's write fails with EFBIG ("File too large"), as it fails
with ENOSPC on a full disk, while the batches before it were stored. The limit is set in the child only (its output
goes to the harness's log file, a few KiB, far below it). The detector must then exit by itself, non-zero, saying
that the store cannot be written; its group's committed offsets must not reach past what its store (and the
changelog behind it) holds; and a detector restarted without the limit on the same state directory must join the
label of every prediction, each exactly once.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import rocksdict
from kafka import TopicPartition

from retrain.consumers.decoding import decode_record
from retrain.schemas import LabeledExample
from retrain.settings import KafkaSettings, TopicSettings
from retrain.state.store import META_KEY
from tests.helpers.kafka_io import make_consumer, make_producer, read_all, send_all
from tests.helpers.processes import Detector, wait_all_joined
from tests.helpers.state_records import label_bytes, prediction_bytes

pytestmark = pytest.mark.kafka

PREDICTIONS = 20_000  # keyed by five models: 12,000 on one partition, 8,000 on another, none on the third
# Per file. A store's write-ahead log reaches it after a few thousand predictions, long before the 8 MiB memtable
# is flushed to a table file: the first batches are stored, a later one is not.
FILE_SIZE_LIMIT = 2 * 1024 * 1024
EXIT_WITHIN_S = 60


def small_files() -> None:
    """In the detector's process, before it starts: files stop growing at the limit, with EFBIG (not SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def committed_offsets(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> dict[int, int]:
    reader = make_consumer(kafka, group)
    try:
        return {p: reader.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)}
    finally:
        reader.close()


def local_offsets(store: Path) -> dict[str, int]:
    """The input offsets the local store's last written batch covers (opened read-only: the database is not written)."""
    db = rocksdict.Rdict(str(store), rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only())
    try:
        raw = db.get(META_KEY)
    finally:
        db.close()
    return json.loads(raw)["offsets"] if raw is not None else {}


def changelog_offsets(reading: KafkaSettings, topics: TopicSettings) -> dict[int, dict[str, int]]:
    """Per partition, the input offsets of the last metadata record in the changelog (what a restore resumes from)."""
    found: dict[int, dict[str, int]] = {}
    for record in read_all(reading, topics.detector_changelog, topics.stream_partitions):  # each partition in order
        if record.key == META_KEY:
            found[record.partition] = json.loads(record.value)["offsets"]
    return found


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_full_disk_stops_the_detector_without_committing_past_its_store(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path, guarantee: str
):
    topics = created_topics
    group = f"detector-{unique}"
    state_dir = tmp_path / "state"
    detector = Detector(
        kafka_settings,
        topics,
        group,
        RETRAIN_KAFKA_PROCESSING_GUARANTEE=guarantee,
        RETRAIN_KAFKA_TRANSACTIONAL_ID=group,  # the same across the restart
        RETRAIN_STATE_DIR=str(state_dir),
    )
    # What a downstream consumer sees: under exactly_once it reads committed transactions only.
    reading = kafka_settings.model_copy(update={"processing_guarantee": guarantee})
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=512 * 1024)
    started = time.monotonic()
    try:
        # The predictions first, their labels only after the restart: all of them are pending in the store.
        send_all(producer, topics.predictions, [prediction_bytes(i) for i in range(PREDICTIONS)])
        detector.start(preexec_fn=small_files)
        try:
            code = detector.process.wait(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the detector was still running {EXIT_WITHIN_S} s after its state store could no longer grow:\n"
                f"{detector.stuck_report(80)}"
            ) from None
        stopped_s = time.monotonic() - started
        output = detector.output()
        assert code != 0, f"the detector exited with 0 on a full disk:\n{output[-3_000:]}"
        last_line = output.strip().splitlines()[-1]  # the reason is the last thing it says
        reason = r"retrain: StoreUnusable: state store \S+ cannot be written: .*File too large"
        assert re.match(reason, last_line), output[-3_000:]

        # Nothing committed past what was stored: not past the local store (written before the commit under
        # at_least_once), and not past the changelog (under exactly_once the commit and the changelog are one
        # transaction, the local write follows it: a restart catches the store up from the changelog).
        commits = committed_offsets(kafka_settings, group, topics.predictions, topics.stream_partitions)
        logged = changelog_offsets(reading, topics)
        stores = {int(p.name): local_offsets(p) for p in (state_dir / group).iterdir() if p.is_dir()}
        print(
            f"\n{guarantee}: the detector exited with {code} after {stopped_s:.1f} s; predictions committed "
            f"{commits}, in the local stores {stores}, in the changelog {logged}"
        )
        for partition, offset in commits.items():
            if offset:
                assert offset <= logged.get(partition, {}).get("predictions", 0), (partition, offset, logged)
                if guarantee == "at_least_once":
                    assert offset <= stores.get(partition, {}).get("predictions", 0), (partition, offset, stores)
        # The disk filled up midway: some batches were stored and committed, not all of them.
        assert 0 < sum(commits.values()) < PREDICTIONS
        assert 0 < sum(s.get("predictions", 0) for s in stores.values()) < PREDICTIONS

        # Nothing lost: restarted without the limit on the same state directory, every label joins, once.
        detector.start()
        send_all(producer, topics.labels, [label_bytes(i) for i in range(PREDICTIONS)])
        wait_all_joined(reading, topics, PREDICTIONS, [detector], timeout_s=60)
        assert detector.terminate() == 0
    finally:
        producer.close()
        detector.kill_if_running()
    elapsed = time.monotonic() - started

    examples = [
        decode_record(r, LabeledExample) for r in read_all(reading, topics.labeled_examples, topics.stream_partitions)
    ]
    ids = Counter(e.prediction_id for e in examples)
    print(f"{guarantee}: {len(examples):,} labeled examples for {len(ids):,} predictions; {elapsed:.0f} s in all")
    assert ids == Counter({f"p-{i}": 1 for i in range(PREDICTIONS)})
    assert read_all(kafka_settings, topics.dead_letters, 1) == []
