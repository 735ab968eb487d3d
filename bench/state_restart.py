"""Benchmark: how soon a detector joins again after a kill -9, and after its partition moves, by the count it holds.

For each of ``--counts`` N, on fresh topics of ``--partitions`` partitions (1 by default: one store holds all N),
this process writes N predictions (5 models, random 32-hex ids, event times from 2 days back, 10 ms apart; JSON
built by hand, confluent-kafka's producer with 1 MiB batches) and then starts a detector process (``retrain
detector``, the rocksdb store, kafka-python). Fill: N predictions over the time from its first record consumed to
its committed offset on ``predictions`` reaching N. Then:

- restart: ``kill -9``; the store's size (du of its directory); the detector started again on the same
  RETRAIN_STATE_DIR, with a label for a pending prediction written as it starts. Seconds from the process start
  to the LabeledExample (its record timestamp on ``labeled-examples``), of which the group (until the new member
  is in a Stable group: the killed one's session, 10 s, expires first) and the store's open
  (``retrain_state_restore_seconds``); predictions read again (``retrain_records_consumed_total``: should be 0).
- move: the restarted detector stopped with SIGTERM (it leaves the group), a second one started in the same group
  on an empty RETRAIN_STATE_DIR, a label written as it starts; seconds to its LabeledExample, and the restore it
  reports (``retrain_state_restore_seconds``, ``retrain_state_restore_records_total``: the changelog records
  read to rebuild the partition, against the changelog's end offsets).

    .venv/bin/python -m bench.state_restart [--counts 200000,1000000,2000000] [--partitions 1] [--bootstrap ...]

Without --bootstrap it starts the project's broker on 127.0.0.1:19692 (fresh data) and stops it after. The topics
of each count are deleted after it, the state directories (a temporary directory) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka.errors import KafkaError

from bench.kafka import GroupWatch, benchmark_kafka, fresh_topics
from bench.services import ServiceProcess, settings_env, wait_until
from retrain.kafka import Consumer, TopicPartition, make_consumer, make_producer, read_at
from retrain.settings import DetectorSettings, KafkaSettings, RegistrySettings, Settings

PORT = 19692
KEY = "a benchmark key that signs the detector's watches"
MODELS = ("fraud", "churn", "credit", "ltv", "upsell")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)  # event times in the past: none refused
SPACING = timedelta(milliseconds=10)  # 2,000,000 predictions span 5.6 hours
LABEL_DELAY = timedelta(hours=3)


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prediction(i: int) -> tuple[bytes, bytes]:
    model = MODELS[i % len(MODELS)]
    pid = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest()  # as uuid4().hex: keys in no order
    return model.encode(), (
        f'{{"schema_version":1,"prediction_id":"{pid}","model_id":"{model}","model_version":0,"features":'
        f'{{"x0":{(i % 97) / 97:.4f},"x1":{(i % 13) / 13:.4f},"x2":{i % 2}.0}},"prediction":{i % 2},'
        f'"timestamp":"{_stamp(START + i * SPACING)}"}}'
    ).encode()


def label(i: int) -> tuple[bytes, bytes]:
    model = MODELS[i % len(MODELS)]
    pid = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest()
    return model.encode(), (
        f'{{"schema_version":1,"prediction_id":"{pid}","model_id":"{model}","label":{(i // 7) % 2},'
        f'"timestamp":"{_stamp(START + i * SPACING + LABEL_DELAY)}"}}'
    ).encode()


def du_mib(path: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def members(watch: GroupWatch, group: str) -> set[str]:
    """The group's member ids while it is Stable (empty otherwise)."""
    with contextlib.suppress(KafkaError):
        described = watch.admin.describe_groups([group])[group]
        if described["group_state"] == "Stable":
            return {member["member_id"] for member in described["members"]}
    return set()


def last_example_time(reader: Consumer, topic: str, partitions: int) -> float:
    """The record timestamp (s) of the newest LabeledExample."""
    ends = reader.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    return max(read_at(reader, topic, tp.partition, end - 1).timestamp for tp, end in ends.items() if end) / 1000


@dataclass(frozen=True)
class Rejoin:
    first_join_s: float  # process start -> the label's LabeledExample written
    group_s: float  # process start -> the new member in a Stable group
    restore_s: float  # retrain_state_restore_seconds
    restored: int  # retrain_state_restore_records_total
    read_again: int  # predictions consumed

    @property
    def after_group_s(self) -> float:
        return self.first_join_s - self.group_s


class CountRun:
    """One count's topics, detector group and clients, and the detector processes started on them."""

    def __init__(self, kafka: KafkaSettings, n: int, partitions: int, workdir: Path) -> None:
        self.partitions, self.workdir = partitions, workdir
        self.topics = fresh_topics(kafka, partitions)
        self.group = f"detector-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            kafka=kafka,
            topics=self.topics,
            detector=DetectorSettings(group_id=self.group),
            registry=RegistrySettings(path=workdir / "registry", hmac_key=KEY),
        )
        self.env = settings_env(settings)
        self.producer = make_producer(
            kafka.model_copy(update={"client": "confluent-kafka"}), linger_ms=50, batch_bytes=2**20
        )
        self.watch, self.reader = GroupWatch(kafka), make_consumer(kafka, None)
        self.services: list[ServiceProcess] = []
        self.timeout_s = 120 + n / 1_000

    def start(self, state_dir: Path, name: str) -> ServiceProcess:
        log = self.workdir / f"{self.group}-{name}.log"
        self.services.append(ServiceProcess("detector", {**self.env, "RETRAIN_STATE_DIR": str(state_dir)}, log))
        return self.services[-1]

    def consumed(self, detector: ServiceProcess) -> int:
        return int(detector.value("retrain_records_consumed_total", service="detector", topic=self.topics.predictions))

    def fill(self, n: int, state_dir: Path) -> tuple[float, float, float]:
        """Write n predictions, have a detector commit them all, kill -9 it: its fill rate, RSS and store (MiB)."""
        written = time.monotonic()
        for i in range(n):
            self.producer.send(self.topics.predictions, *prediction(i))
        self.producer.flush()
        print(f"N={n:,}: predictions written in {time.monotonic() - written:.1f} s", file=sys.stderr, flush=True)

        first = self.start(state_dir, "fill")
        wait_until(lambda: self.consumed(first) > 0, "the first prediction read", 120, [first], every_s=0.1)
        began = time.monotonic()
        lag = lambda: self.watch.committed_lag(self.group, [self.topics.predictions], self.partitions)  # noqa: E731
        wait_until(lambda: lag() == 0, f"{n:,} predictions committed", self.timeout_s, [first], every_s=0.25)
        fill_rate, rss = n / (time.monotonic() - began), rss_mib(first.pid)
        first.process.kill()  # SIGKILL
        first.process.wait()
        store_mib = du_mib(state_dir)
        print(f"N={n:,}: filled at {fill_rate:,.0f}/s, killed", file=sys.stderr, flush=True)
        return fill_rate, rss, store_mib

    def rejoin(self, state_dir: Path, name: str, labeled: int) -> Rejoin:
        """Start a detector, write one label at once, time its join (the detector is left running)."""
        old = members(self.watch, self.group)
        started = time.time()
        detector = self.start(state_dir, name)
        self.producer.send(self.topics.labels, *label(labeled))
        self.producer.flush()

        def new_member() -> bool:
            now = members(self.watch, self.group)
            return bool(now) and not now & old

        wait_until(new_member, "the new member in a Stable group", 120, [detector], every_s=0.1)
        group_s = time.time() - started
        joined = lambda: detector.value("retrain_joins_total", outcome="joined") >= 1  # noqa: E731
        wait_until(joined, "the label joined", self.timeout_s, [detector], every_s=0.1)
        return Rejoin(
            last_example_time(self.reader, self.topics.labeled_examples, self.partitions) - started,
            group_s,
            detector.value("retrain_state_restore_seconds"),
            int(detector.value("retrain_state_restore_records_total")),
            self.consumed(detector),
        )

    def close(self) -> None:
        """Kill the detectors still running, close the clients, delete the count's topics."""
        for service in self.services:
            if service.running:
                service.process.kill()
                service.process.wait()
        self.producer.close()
        self.reader.close()
        with contextlib.suppress(KafkaError):
            self.watch.admin.delete_topics(list(self.topics.names().values()))
        self.watch.close()


def run(kafka: KafkaSettings, n: int, partitions: int, workdir: Path) -> tuple[str, Rejoin]:
    """One count: fill, kill -9 and restart, move; the line to print and the restart's figures."""
    count = CountRun(kafka, n, partitions, workdir)
    first_dir, second_dir = workdir / f"{count.group}-first", workdir / f"{count.group}-second"
    try:
        fill_rate, rss, store_mib = count.fill(n, first_dir)
        restart = count.rejoin(first_dir, "restart", n // 2)
        count.services[-1].stop()  # SIGTERM: it commits, closes its store and leaves the group
        move = count.rejoin(second_dir, "move", n // 2 + 1)
        changelog = count.watch.ends([count.topics.detector_changelog], partitions)
        count.services[-1].stop()
    finally:
        count.close()
    line = (
        f"N={n:,}: fill {fill_rate:,.0f} predictions/s (detector RSS {rss:,.0f} MiB), store {store_mib:,.1f} MiB on "
        f"disk | restart: first join {restart.first_join_s:.2f} s (group {restart.group_s:.2f} s, store open "
        f"{restart.restore_s:.3f} s, {restart.restored:,} changelog records), {restart.read_again:,} predictions "
        f"read again | move: restore {move.restore_s:.2f} s, {move.restored:,} changelog records read (of "
        f"{changelog:,} in the topic, {move.restored / max(move.restore_s, 1e-9):,.0f}/s), first join "
        f"{move.first_join_s:.2f} s (group {move.group_s:.2f} s), {move.read_again:,} predictions read again"
    )
    return line, restart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="200000,1000000,2000000", help="pending predictions, one run each")
    parser.add_argument("--partitions", type=int, default=1, help="of predictions, labels and the changelog")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    restarts: dict[int, Rejoin] = {}
    with benchmark_kafka(args.bootstrap, port=PORT) as kafka, tempfile.TemporaryDirectory() as workdir:
        for n in counts:
            line, restarts[n] = run(kafka, n, args.partitions, Path(workdir))
            print(line, flush=True)
    low, high = restarts[counts[0]], restarts[counts[-1]]
    ratio = high.first_join_s / low.first_join_s
    print(
        f"restart to first join: {low.first_join_s:.2f} s at N={counts[0]:,}, {high.first_join_s:.2f} s at "
        f"N={counts[-1]:,} ({counts[-1] / counts[0]:.1f}x the predictions): ratio {ratio:.2f}, so it "
        f"{'grows' if ratio > 1.5 else 'does not grow'} with N (past the group wait: {low.after_group_s:.2f} s -> "
        f"{high.after_group_s:.2f} s)"
    )


if __name__ == "__main__":
    main()
