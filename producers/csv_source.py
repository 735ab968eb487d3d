"""A CSV file as a stream: a :class:`CsvSource`, and how its cells read as feature values, targets and times."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from retrain.producers.examples import Example, Target
from retrain.schemas.types import MAX_CATEGORY_LENGTH, FeatureValue

_MISSING_TEXT = ("", "nan", "+nan", "-nan")  # CSV cells read as a missing value (compared lower-cased, stripped)


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
