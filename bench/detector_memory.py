"""Benchmark: resident memory per watched model, and per pending prediction in the join buffer.

    .venv/bin/python -m bench.detector_memory [--models 10000] [--long-models 1000] [--pending 1000000]
    .venv/bin/python -m bench.detector_memory --breakdown short   # where the bytes go (tracemalloc)

Per model, two scenarios, each in a fresh process (memory freed by one must not flatter the next):
- short: ``--models`` classification models after 50 labeled examples each (detectors past their warm-up);
- long: ``--long-models`` models after 10,000 examples each (the change history, 10,000 errors, is full).
Each model has a promoted version and errors drawn at a 20% rate (seeded), and every example goes through the
detector service's own per-example path (``DetectorService._joined``): what is measured is what a detector holds
per model, its :class:`ModelWatch` and its per-model Prometheus series alike. The figure is the growth of the
process's resident set size (from /proc/self/statm) divided by the count.

Measured on the 2-core development machine (runs agree to 0.1 KiB): at 1e0bd35, short 56.1 KiB and long 57.4 KiB
per model (2 runs); with bit-packed error windows and compact metric series, short 5.3 KiB and long 6.6 KiB (3 runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from retrain.consumers.detector import DetectorService
from retrain.decisions.join import LabelJoiner
from retrain.schemas import LabeledExample, ModelUpdatedEvent, PredictionEvent
from retrain.settings import DetectorSettings, TopicSettings

START = datetime(2026, 11, 28, tzinfo=UTC)
ERROR_RATE = 0.2
SCENARIOS = {"short": 50, "long": 10_000}  # labeled examples per model


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Outputs:
    """What the service's per-example path emits to: nothing is kept (the producer's buffers are not per model)."""

    def __init__(self) -> None:
        self.publisher = SimpleNamespace(flush=lambda: None)
        self.sent = 0

    def emit(self, event: Any) -> None:
        self.sent += 1


def _examples(model_id: str) -> tuple[LabeledExample, LabeledExample]:
    """A correct and a wrong prediction of version 1: the two examples every observation of the model reuses."""
    return tuple(  # type: ignore[return-value]
        LabeledExample(
            prediction_id="p",
            model_id=model_id,
            model_version=1,
            features={"x0": 1.0},
            prediction=prediction,
            label=0,
            prediction_timestamp=START,
            label_timestamp=START,
        )
        for prediction in (0, 1)
    )


def _promote(service: DetectorService, model_id: str) -> None:
    """Version 1 of the model is in service (as the detector learns from model-updates)."""
    update = ModelUpdatedEvent(
        model_id=model_id,
        version=1,
        promoted=True,
        outcome="promoted",
        metrics={"accuracy": 0.8},
        artifact_uri=f"registry://{model_id}/1",
        sha256="0" * 64,
        updated_at=START,
    )
    service._on_update(update)


def per_model(count: int, examples_each: int) -> tuple[float, DetectorService]:
    """RSS growth per model after ``examples_each`` labeled examples of each of ``count`` models."""
    service = DetectorService(DetectorSettings(), TopicSettings(), registry=CollectorRegistry())
    out = _Outputs()
    record = SimpleNamespace(topic="predictions", partition=0, offset=0, timestamp=0)
    rng = random.Random(7)
    gc.collect()
    before = rss_bytes()
    for i in range(count):
        model_id = f"model-{i}"
        _promote(service, model_id)
        correct, wrong = _examples(model_id)
        for _ in range(examples_each):
            service._joined(wrong if rng.random() < ERROR_RATE else correct, record, out)  # type: ignore[arg-type]
        del correct, wrong
    gc.collect()
    assert len(service.watches) == count
    return (rss_bytes() - before) / count, service


def per_pending_prediction(count: int) -> float:
    joiner = LabelJoiner(max_pending=count + 1)
    gc.collect()
    before = rss_bytes()
    for i in range(count):
        joiner.add_prediction(
            PredictionEvent(
                prediction_id=f"pred-{i:012d}",
                model_id="m",
                model_version=1,
                features={"x0": i * 0.5, "x1": 1.0, "x2": 2.0},
                prediction=1,
                timestamp=START + timedelta(seconds=i),
            ),
            offset=i,
        )
    gc.collect()
    assert joiner.pending_predictions == count
    return (rss_bytes() - before) / count


def breakdown(scenario: str, count: int, top: int = 15) -> None:
    """Python allocations per model by source line (River's Rust ADWIN is not traced: RSS minus traced)."""
    tracemalloc.start()
    rss, service = per_model(count, SCENARIOS[scenario])
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    traced = sum(stat.size for stat in snapshot.statistics("filename"))
    print(f"{scenario}: {traced / count:.0f} bytes per model traced by tracemalloc (RSS growth {rss:.0f}, inflated")
    print("by tracemalloc's own bookkeeping); the top lines:")
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size / count:8.0f} B  {stat.count / count:6.1f} blocks  {frame.filename}:{frame.lineno}")
    del service


def _run_in_child(*args: str) -> str:
    """The figure printed by this module run with ``args`` in a fresh interpreter."""
    command = [sys.executable, "-m", "bench.detector_memory", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000, help="models of the short scenario")
    parser.add_argument("--long-models", type=int, default=1_000, help="models of the long scenario (0: skip)")
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending predictions (0: skip)")
    parser.add_argument("--one", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)  # a child's single scenario
    parser.add_argument("--breakdown", choices=sorted(SCENARIOS), help="tracemalloc's top lines for one scenario")
    args = parser.parse_args()
    if args.one is not None:
        figure, _ = per_model(args.models, SCENARIOS[args.one])
        print(figure)
        return
    if args.breakdown is not None:
        breakdown(args.breakdown, args.models if args.breakdown == "short" else args.long_models)
        return
    runs = [("short", args.models), ("long", args.long_models)]
    for scenario, count in runs:
        if count > 0:
            model = float(_run_in_child("--one", scenario, "--models", str(count)))
            print(
                f"{count} classification models after {SCENARIOS[scenario]} examples each (default detectors, "
                f"ModelWatch and metric series): {model / 1024:.1f} KiB per model, "
                f"{model * count / 2**20:.0f} MiB in all"
            )
    if args.pending > 0:
        pending = per_pending_prediction(args.pending)
        print(
            f"{args.pending} pending predictions (3 features each): {pending:.0f} bytes per prediction, "
            f"{pending * args.pending / 2**20:.0f} MiB in all"
        )


if __name__ == "__main__":
    main()
