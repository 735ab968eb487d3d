"""Drifting streams to replay or evaluate on: River's generators with abrupt or gradual concept switches, or a CSV.

A :class:`StreamSource` is a description (generator, concepts, drift points, seed; or a CSV file and its
columns) that opens, as many times as needed, into the same sequence of :class:`Example` s. The replayer sends
them to Kafka; ``retrain evaluate`` runs the decision code over them offline. Both read the same source.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Target = bool | int | float | str


@dataclass(frozen=True)
class Example:
    features: dict[str, float]
    target: Target
    timestamp: datetime | None = None  # from the CSV's timestamp column, when it has one


def _concept(generator: str, concept: int, seed: int, noise: float) -> Any:
    """One River generator in one concept (its classification function; a model seed for the others)."""
    from river.datasets import synth  # here, not at the top: `retrain`'s parser imports this module (2.5 s)

    if generator == "sea":
        return synth.SEA(variant=concept, noise=noise, seed=seed)
    if generator == "agrawal":
        return synth.Agrawal(classification_function=concept, seed=seed, perturbation=noise)
    if generator == "stagger":
        return synth.STAGGER(classification_function=concept, seed=seed)
    if generator == "hyperplane":
        return synth.Hyperplane(seed=seed * 1_000 + concept, noise_percentage=noise)
    if generator == "rbf":
        return synth.RandomRBFDrift(seed_model=concept, seed_sample=seed)
    if generator == "friedman":  # regression; a concept is which of the ten features the function reads
        return _FriedmanConcept(synth.Friedman(seed=seed), concept)
    raise ValueError(f"unknown generator {generator!r}; choose one of {', '.join(GENERATORS)}")


class _FriedmanConcept:
    """Friedman #1 (a regression target from features 0-4; 5-9 are noise) with its features renamed: concept 1
    swaps the relevant and the noise halves, concept 2 reverses their order (as River's FriedmanDrift does)."""

    def __init__(self, source: Any, concept: int) -> None:
        self.source = source
        self.order = [list(range(10)), [5, 6, 7, 8, 9, 0, 1, 2, 3, 4], list(range(9, -1, -1))][concept]

    def __iter__(self) -> Iterator[tuple[dict[int, float], float]]:
        for features, target in self.source:
            yield {self.order[name]: value for name, value in features.items()}, target


GENERATORS = ("sea", "agrawal", "stagger", "hyperplane", "rbf", "friedman")
REGRESSION_GENERATORS = ("friedman",)
_CONCEPT_RANGES = {"sea": range(4), "agrawal": range(10), "stagger": range(3), "friedman": range(3)}


@dataclass(frozen=True)
class GeneratorSource:
    """``concepts[i]`` is in force from ``drift_points[i-1]`` on; each switch is spread over ``width`` examples."""

    generator: str
    concepts: tuple[int, ...]
    drift_points: tuple[int, ...]
    examples: int
    seed: int = 42
    noise: float = 0.0
    width: int = 1

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; choose one of {', '.join(GENERATORS)}")
        allowed = _CONCEPT_RANGES.get(self.generator)
        if allowed is not None and any(c not in allowed for c in self.concepts):
            raise ValueError(f"{self.generator} concepts must be in {allowed.start}..{allowed.stop - 1}")
        if len(self.drift_points) != len(self.concepts) - 1:
            raise ValueError(f"{len(self.concepts)} concepts need {len(self.concepts) - 1} drift points")
        if list(self.drift_points) != sorted(set(self.drift_points)) or any(p <= 0 for p in self.drift_points):
            raise ValueError("drift points must be positive and increasing")
        if self.examples < 1 or self.width < 1:
            raise ValueError("examples and width must be >= 1")
        if not 0 <= self.noise < 1:
            raise ValueError("noise must be in [0, 1)")

    def __iter__(self) -> Iterator[Example]:
        # River's ConceptDriftStream semantics (a sigmoid of width `width` around each point; each concept's
        # generator advances only when drawn from), without its overflow far from the point when width is 1.
        streams = [
            iter(_concept(self.generator, concept, self.seed + index, self.noise))
            for index, concept in enumerate(self.concepts)
        ]
        chooser = random.Random(self.seed)
        for position in range(self.examples):
            segment = 0
            for index, point in enumerate(self.drift_points, start=1):
                exponent = max(-50.0, min(50.0, -4.0 * (position - point) / self.width))
                if chooser.random() < 1.0 / (1.0 + math.exp(exponent)):
                    segment = index
            features, target = next(streams[segment])
            yield Example({str(name): _number(value) for name, value in features.items()}, _target(target))

    @property
    def description(self) -> str:
        points = ",".join(str(p) for p in self.drift_points) or "none"
        concepts = "->".join(str(c) for c in self.concepts)
        return f"{self.generator} concepts {concepts}, drifts at {points}, {self.examples:,} examples, seed {self.seed}"


@dataclass(frozen=True)
class CsvSource:
    """Rows of a CSV file: a target column, feature columns (default: every other numeric column), a timestamp."""

    path: Path
    target: str
    features: tuple[str, ...] = ()
    timestamp: str | None = None
    drift_points: tuple[int, ...] = ()
    limit: int | None = None
    _columns: list[str] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.path.is_file():
            raise ValueError(f"no such CSV file: {self.path}")
        with self.path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
        if not header:
            raise ValueError(f"{self.path} has no header row")
        missing = [
            c for c in (self.target, *self.features, *([self.timestamp] if self.timestamp else [])) if c not in header
        ]
        if missing:
            raise ValueError(f"{self.path} has no column {', '.join(missing)} (columns: {', '.join(header)})")
        self._columns.extend(header)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        if self.features:
            return self.features
        return tuple(c for c in self._columns if c not in (self.target, self.timestamp))

    def __iter__(self) -> Iterator[Example]:
        columns = self.feature_columns
        with self.path.open(newline="") as handle:
            rows = csv.DictReader(handle)
            for line, row in enumerate(itertools.islice(rows, self.limit), start=2):
                try:
                    features = {name: _number(row[name]) for name in columns}
                except ValueError as error:
                    raise ValueError(f"{self.path}:{line}: {error}") from error
                stamp = _timestamp(row[self.timestamp]) if self.timestamp else None
                yield Example(features, _csv_target(row[self.target]), stamp)

    @property
    def examples(self) -> int:
        with self.path.open(newline="") as handle:
            count = sum(1 for _ in handle) - 1
        return count if self.limit is None else min(count, self.limit)

    @property
    def description(self) -> str:
        return f"{self.path.name} (target {self.target}, {len(self.feature_columns)} features)"


StreamSource = GeneratorSource | CsvSource


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"feature value {value!r} is not a finite number")
    return number


def _target(value: Any) -> Target:
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def _csv_target(text: str) -> Target:
    text = text.strip()
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if kind is int or math.isfinite(value) else text
    return text


def _timestamp(text: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        stamp = datetime.fromisoformat(text)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


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
    group.add_argument("--generator", choices=GENERATORS, default="sea", help="River generator (default sea)")
    group.add_argument("--concepts", default="0,1,2", help="concept of each segment (default 0,1,2)")
    group.add_argument("--drift-points", default=None, help="where each new concept starts, e.g. 20000,40000")
    group.add_argument("--drift-width", type=int, default=1, help="examples over which a switch happens (1: abrupt)")
    group.add_argument("--examples", type=int, default=60_000, help="stream length (generators)")
    group.add_argument("--limit", type=int, default=None, help="CSV: read at most this many rows")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--noise", type=float, default=0.1, help="label noise (SEA, Hyperplane) or perturbation")
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
