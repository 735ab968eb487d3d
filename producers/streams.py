"""Drifting streams to replay or evaluate on: River's generators (and ``flights``, with categorical, boolean and
missing features) with abrupt or gradual concept switches, or a CSV.

A :class:`StreamSource` is a description (generator, concepts, drift points, seed; or a CSV file and its
columns) that opens, as many times as needed, into the same sequence of :class:`Example` s. The replayer sends
them to Kafka; ``retrain evaluate`` runs the decision code over them offline. Both read the same source.
The sources live in :mod:`producers.generators` (``flights`` in :mod:`producers.flights`) and
:mod:`producers.csv_source`; this module holds the command-line options that pick one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retrain.producers.csv_source import CsvSource, csv_feature
from retrain.producers.examples import Example, Target
from retrain.producers.generators import GENERATORS, REGRESSION_GENERATORS, GeneratorSource

__all__ = [
    "GENERATORS",
    "REGRESSION_GENERATORS",
    "CsvSource",
    "Example",
    "GeneratorSource",
    "StreamSource",
    "Target",
    "add_stream_options",
    "csv_feature",
    "stream_from_args",
]

StreamSource = GeneratorSource | CsvSource


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The options that describe a stream, shared by ``retrain replay``, ``evaluate`` and ``demo``."""
    group = parser.add_argument_group("stream")
    group.add_argument(
        "--generator", choices=GENERATORS, default="sea", help="River generator, or flights (default sea)"
    )
    group.add_argument("--concepts", default="0,1,2", help="concept of each segment (default 0,1,2)")
    group.add_argument("--drift-points", default=None, help="where each new concept starts, e.g. 20000,40000")
    group.add_argument("--drift-width", type=int, default=1, help="examples over which a switch happens (1: abrupt)")
    group.add_argument("--examples", type=int, default=60_000, help="stream length (generators)")
    group.add_argument("--limit", type=int, default=None, help="CSV: read at most this many rows")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument(
        "--noise", type=float, default=0.1, help="label noise (SEA, Hyperplane, flights) or perturbation"
    )
    group.add_argument("--csv", type=Path, default=None, help="replay a CSV file instead of a generator")
    group.add_argument("--target", default=None, help="CSV: the target column")
    group.add_argument("--features", default=None, help="CSV: feature columns (default: all the others)")
    group.add_argument("--timestamp-column", default=None, help="CSV: a column of event times")


def stream_from_args(args: argparse.Namespace) -> StreamSource:
    points = _ints(args.drift_points)
    if args.csv is not None:
        if not args.target:
            raise ValueError("--csv needs --target COLUMN")
        features = tuple(f.strip() for f in (args.features or "").split(",") if f.strip())
        return CsvSource(args.csv, args.target, features, args.timestamp_column, points, args.limit)
    concepts = _ints(args.concepts)
    if args.drift_points is None:
        # Evenly spaced switches when only the concepts are given.
        points = tuple(args.examples * i // len(concepts) for i in range(1, len(concepts)))
    return GeneratorSource(
        args.generator,
        concepts,
        points,
        args.examples,
        args.seed,
        args.noise if args.generator != "stagger" else 0.0,
        args.drift_width,
    )
