"""Benchmark: the detector's own work per record, without Kafka, next to decoding the same records with pydantic.

``DetectorService.handle`` over N predictions then N labels (SEA features, one model), each poll batch of 1,000
closed by ``after_batch`` and the commit's hooks (``prepare_commit``, ``outputs_written``), the outputs sent to a
producer that drops them. Three detectors: the join in memory without state snapshots, with them (one signed
snapshot per batch), and the default state store on disk (RocksDB in a temporary directory; its changelog records
dropped too: the producer's cost per record is the Kafka benchmarks' business). The baseline is the pydantic
models alone decoding the same records (``decode(..., fast_path=False)``), the decoder the hot path had before
msgspec. Usage:

    .venv/bin/python -m bench.detector_handle [--examples 20000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from retrain.consumers.detector import DetectorService
from retrain.consumers.partition_state import PartitionStates
from retrain.consumers.service import Outputs
from retrain.consumers.state import StateChangelog
from retrain.kafka import Record, TopicPartition
from retrain.producers import EventPublisher
from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import LabelEvent, PredictionEvent, decode, encode
from retrain.settings import DetectorSettings, TopicSettings

KEY = b"a benchmark key that signs the detector's state"


class DroppingProducer:
    """Every record accepted and reported delivered at once, none kept."""

    transactional = False

    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic, key, value, headers=None, partition=None, on_delivery=None) -> None:
        self.sent += 1
        if on_delivery is not None:
            on_delivery(None, partition or 0, self.sent)

    def flush(self, timeout_s: float | None = None) -> None: ...

    def forget_unflushed(self) -> None: ...


class EmptyChangelog:
    """A state topic with nothing in it yet (a first start): restores read nothing."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def seek_to_beginning(self, partitions: list[TopicPartition]) -> None: ...

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    def position(self, partition: TopicPartition) -> int:
        return 0

    def close(self) -> None: ...


def handle_seconds(records: list[Record], examples: int, mode: str) -> float:
    """Seconds for ``mode`` ("plain", "snapshots" or "store") to handle ``records`` in poll batches of 1,000."""
    topics = TopicSettings()
    publisher = EventPublisher(DroppingProducer(), topics)  # type: ignore[arg-type]
    state_dir = Path(tempfile.mkdtemp(prefix="bench-handle-"))
    states = (
        PartitionStates(state_dir, publisher, EmptyChangelog(), topics.detector_changelog)  # type: ignore[arg-type]
        if mode == "store"
        else None
    )
    changelog = StateChangelog(publisher, EmptyChangelog(), topics.detector_state) if mode == "snapshots" else None  # type: ignore[arg-type]
    service = DetectorService(
        DetectorSettings(state_store="rocksdb" if mode == "store" else "memory"),
        topics,
        registry=CollectorRegistry(),
        changelog=changelog,
        state_key=KEY if mode != "plain" else None,
        states=states,
    )
    out = Outputs(publisher, "detector")
    started = time.perf_counter()
    for start in range(0, len(records), 1_000):
        for record in records[start : start + 1_000]:
            service.handle(record, out)
        service.after_batch(out)
        service.prepare_commit({})
        service.outputs_written()
    handled = time.perf_counter() - started
    assert service.joiners[0].stats.joined == examples
    service.close()
    shutil.rmtree(state_dir, ignore_errors=True)
    return handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    topics = TopicSettings()
    stream = sea_stream(sea_model(), n=args.examples, drift_at=None, model_id="bench")
    now_ms = int(time.time() * 1000)
    records = [Record(topics.predictions, 0, i, b"bench", encode(s.prediction), now_ms) for i, s in enumerate(stream)]
    records += [Record(topics.labels, 0, i, b"bench", encode(s.label), now_ms) for i, s in enumerate(stream)]

    started = time.perf_counter()
    for record in records:
        decode(record.value, PredictionEvent if record.topic == topics.predictions else LabelEvent, fast_path=False)
    pydantic = time.perf_counter() - started
    seconds = {mode: handle_seconds(records, args.examples, mode) for mode in ("plain", "snapshots", "store")}

    n = len(records)
    print(f"records: {n} ({args.examples} predictions, then {args.examples} labels)")
    print(f"pydantic decode alone (baseline): {pydantic / n * 1e6:.1f} us per record")
    handled = seconds["plain"]
    print(
        f"detector handle (decode, join, ADWIN + Page-Hinkley, example encoded and sent to a dropping producer, "
        f"metrics per batch): {handled / n * 1e6:.1f} us per record = {args.examples / handled:,.0f} labeled "
        f"examples/s; {handled / pydantic:.2f} x the pydantic decode alone"
    )
    for mode, what in (("snapshots", "join in memory, state snapshots"), ("store", "state store on disk")):
        print(
            f"with the {what}: {seconds[mode] / args.examples * 1e6:.1f} us per labeled example "
            f"({seconds[mode] / handled:.2f} x without state)"
        )
    print(
        f"state store / in-memory join with snapshots, time per example: {seconds['store'] / seconds['snapshots']:.2f}"
    )


if __name__ == "__main__":
    main()
