"""Drifting streams to replay or evaluate on: River's generators (and ``flights``, with categorical, boolean and
missing features) with abrupt or gradual concept switches, or a CSV.

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
from typing import Any, NamedTuple

# What an event carries as a feature value: a finite number, a boolean, a category (a string), or None (missing).
from schemas.types import MAX_CATEGORY_LENGTH, FeatureValue

Target = bool | int | float | str
_MISSING_TEXT = ("", "nan", "+nan", "-nan")  # CSV cells read as a missing value (compared lower-cased, stripped)


@dataclass(frozen=True)
class Example:
    features: dict[str, FeatureValue]
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
    if generator == "flights":
        return _Flights(concept, seed, noise)
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


@dataclass(frozen=True)
class _FlightRules:
    """One concept of ``flights``: which carriers fly, and what makes a flight late."""

    carriers: tuple[str, ...]
    late_carriers: frozenset[str]  # late when they depart in [late_from, late_to) o'clock
    late_from: float
    late_to: float
    busy_origins: frozenset[str]  # late on weekends (busy_on_weekend) or on weekdays
    busy_on_weekend: bool
    long_haul: float  # a flight at least this long is late (a missing distance is not)


_CARRIERS = ("AA", "DL", "UA", "WN", "B6", "AS", "NK", "F9")
_NEW_CARRIERS = ("XE", "ZK")  # never flown in concept 0: a model trained there meets unseen categories
_AIRPORTS = (
    "ATL", "BOS", "CLT", "DEN", "DFW", "DTW", "EWR", "IAH", "JFK", "LAS",
    "LAX", "LGA", "MCO", "MIA", "MSP", "ORD", "PHL", "PHX", "SEA", "SFO",
)  # fmt: skip
_FLIGHT_RULES = (
    _FlightRules(  # evening low-cost carriers, weekday hubs in the north-east and on the west coast
        carriers=_CARRIERS,
        late_carriers=frozenset({"NK", "F9", "B6"}),
        late_from=15,
        late_to=24,
        busy_origins=frozenset({"ORD", "EWR", "SFO", "LGA"}),
        busy_on_weekend=False,
        long_haul=2_400,
    ),
    _FlightRules(  # morning legacy carriers and a new one, weekend leisure airports, more long hauls
        carriers=_CARRIERS + _NEW_CARRIERS,
        late_carriers=frozenset({"AA", "UA", "XE"}),
        late_from=5,
        late_to=12,
        busy_origins=frozenset({"DEN", "DFW", "LAS", "MCO"}),
        busy_on_weekend=True,
        long_haul=2_000,
    ),
    _FlightRules(  # midday, the other new carrier; weekday east-coast airports
        carriers=_CARRIERS + _NEW_CARRIERS,
        late_carriers=frozenset({"WN", "DL", "ZK", "NK"}),
        late_from=10,
        late_to=19,
        busy_origins=frozenset({"BOS", "JFK", "MIA", "ATL"}),
        busy_on_weekend=False,
        long_haul=2_700,
    ),
)
_MISSING_DISTANCE = 0.05  # share of flights whose distance is missing (None)


class _Flight(NamedTuple):
    carrier: str
    origin: str
    weekend: bool
    distance: float | None
    departure_hour: float

    def delayed(self, rules: _FlightRules) -> bool:
        """A concept's deterministic rule (before label noise)."""
        return (
            (self.carrier in rules.late_carriers and rules.late_from <= self.departure_hour < rules.late_to)
            or (self.origin in rules.busy_origins and self.weekend is rules.busy_on_weekend)
            or (self.distance is not None and self.distance >= rules.long_haul)
        )


class _Flights:
    """Seeded flights labelled delayed (1) or not (0) by one concept's rules, each label flipped with probability
    ``noise``: categorical (carrier, origin), boolean (weekend), partly missing (distance) and numeric features."""

    def __init__(self, concept: int, seed: int, noise: float) -> None:
        self.rules = _FLIGHT_RULES[concept]
        self.concept = concept
        self.seed = seed
        self.noise = noise

    def __iter__(self) -> Iterator[tuple[dict[str, FeatureValue], int]]:
        rng = random.Random(f"flights:{self.seed}:{self.concept}")  # a str seed is stable across runs
        while True:
            flight = _draw_flight(rng, self.rules.carriers)
            flipped = rng.random() < self.noise
            yield dict(flight._asdict()), int(flight.delayed(self.rules) != flipped)


def _draw_flight(rng: random.Random, carriers: tuple[str, ...]) -> _Flight:
    # The same draws whether or not the distance goes missing, so nothing else depends on it.
    carrier, origin = rng.choice(carriers), rng.choice(_AIRPORTS)
    weekend = rng.random() < 2 / 7
    distance = round(rng.uniform(150.0, 3_000.0), 1)
    missing = rng.random() < _MISSING_DISTANCE
    return _Flight(carrier, origin, weekend, None if missing else distance, float(rng.randrange(24)))


GENERATORS = ("sea", "agrawal", "stagger", "hyperplane", "rbf", "friedman", "flights")
REGRESSION_GENERATORS = ("friedman",)
_CONCEPT_RANGES = {
    "sea": range(4),
    "agrawal": range(10),
    "stagger": range(3),
    "friedman": range(3),
    "flights": range(len(_FLIGHT_RULES)),
}


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
            yield Example({str(name): _feature(value) for name, value in features.items()}, _target(target))

    @property
    def description(self) -> str:
        points = ",".join(str(p) for p in self.drift_points) or "none"
        concepts = "->".join(str(c) for c in self.concepts)
        return f"{self.generator} concepts {concepts}, drifts at {points}, {self.examples:,} examples, seed {self.seed}"


@dataclass(frozen=True)
class CsvSource:
    """Rows of a CSV file: a target column, feature columns (default: every column but the target and the
    timestamp), a timestamp column. Cells read as :func:`csv_feature` says."""

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
                features = {name: self._cell(row, name, line) for name in columns}
                stamp = _timestamp(row[self.timestamp]) if self.timestamp else None
                yield Example(features, _csv_target(row[self.target]), stamp)

    def _cell(self, row: dict[str, str | None], column: str, line: int) -> FeatureValue:
        text = row[column]
        try:
            if text is None:  # DictReader's filler for a row shorter than the header
                raise ValueError("the row has fewer cells than the header")
            return csv_feature(text)
        except ValueError as error:
            raise ValueError(f"{self.path}:{line}: column {column!r}: {error}") from error

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


def _feature(value: Any) -> FeatureValue:
    """A generator's feature value as an event carries it: River's ints and numpy numbers become floats."""
    if value is None or isinstance(value, bool | str):
        return value
    return _number(value)


def csv_feature(text: str) -> FeatureValue:
    """A CSV cell as an event would carry it: a finite number, ``true``/``false``, missing (an empty cell or
    ``nan``), or else the (stripped) string. ``inf`` and strings over MAX_CATEGORY_LENGTH characters are errors."""
    text = text.strip()
    folded = text.lower()
    if folded in _MISSING_TEXT:
        return None
    if folded in ("true", "false"):
        return folded == "true"
    number = _float_or_none(text)
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    if len(text) > MAX_CATEGORY_LENGTH:
        raise ValueError(f"a string of {len(text)} characters (at most {MAX_CATEGORY_LENGTH})")
    return text


def _float_or_none(text: str) -> float | None:
    # float() also takes Python's digit separators ("1_000"); in a CSV that is more likely a code than a number.
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


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
