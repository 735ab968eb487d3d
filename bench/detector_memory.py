"""Benchmark: resident memory per watched model, and per pending prediction in the join buffer.

    .venv/bin/python -m bench.detector_memory [--models 10000] [--pending 1000000]

Figures are the growth of this process's resident set size (from /proc/self/statm) divided by the count.
"""

from __future__ import annotations

import argparse
import gc
import os
from datetime import UTC, datetime, timedelta

from retrain.decisions.join import LabelJoiner
from retrain.decisions.policy import ModelWatch, PolicyConfig
from schemas import LabeledExample, PredictionEvent


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def per_model(count: int) -> float:
    config = PolicyConfig()
    start = datetime(2026, 11, 28, tzinfo=UTC)
    example = LabeledExample(
        prediction_id="p",
        model_id="m",
        model_version=1,
        features={"x0": 1.0},
        prediction=1,
        label=0,
        prediction_timestamp=start,
        label_timestamp=start,
    )
    gc.collect()
    before = rss_bytes()
    watches = [ModelWatch(f"model-{i}", config, version=1) for i in range(count)]
    for watch in watches:  # a model that has seen a little traffic: detectors past their warm-up
        for _ in range(50):
            watch.observe(example)
    gc.collect()
    return (rss_bytes() - before) / count


def per_pending_prediction(count: int) -> float:
    joiner = LabelJoiner(max_pending=count + 1)
    start = datetime(2026, 11, 28, tzinfo=UTC)
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
                timestamp=start + timedelta(seconds=i),
            ),
            offset=i,
        )
    gc.collect()
    assert joiner.pending_predictions == count
    return (rss_bytes() - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=1_000_000)
    args = parser.parse_args()
    model = per_model(args.models)
    print(
        f"{args.models} models (ADWIN + PageHinkley, 500-example rolling window): {model / 1024:.1f} KiB per model, "
        f"{model * args.models / 2**20:.0f} MiB in all"
    )
    pending = per_pending_prediction(args.pending)
    print(
        f"{args.pending} pending predictions (3 features each): {pending:.0f} bytes per prediction, "
        f"{pending * args.pending / 2**20:.0f} MiB in all"
    )


if __name__ == "__main__":
    main()
