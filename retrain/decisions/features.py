"""How feature dicts become an estimator's matrix, fixed when a version is fitted. Pure Python, no Kafka.

A :class:`FeatureEncoding` is learnt from the training rows and stored inside the version, so the scorer builds
exactly the matrix the model was trained on:
- a column is a number (numbers, and booleans as 1/0) or a category (strings), whichever the training rows
  mostly held; a value of the other type is scored as missing and reported as mistyped;
- a category column keeps the vocabulary of its frequent categories; a rare or unseen category gets one shared
  "other" code, after the vocabulary's;
- a missing value (null, or a feature the row lacks) is NaN; a feature the version never saw is ignored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

NAN = math.nan
ColumnKind = Literal["number", "category"]
FeatureValue = float | int | bool | str | None
Row = Mapping[str, FeatureValue]
MAX_CATEGORIES = 250  # a HistGradientBoosting category code must stay below max_bins (255 by default)
MIN_CATEGORY_COUNT = 5  # a category seen fewer times in the training rows is "other"


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind = "number"
    categories: tuple[str, ...] = ()  # code i is categories[i]; len(categories) is "other"

    def encode(self, value: Any) -> tuple[float, bool]:
        """The matrix value, and whether ``value`` had the wrong type for this column (then NaN)."""
        if value is None:
            return NAN, False
        if self.kind == "number":
            if isinstance(value, str):
                return NAN, True
            return float(value), False
        if not isinstance(value, str):
            return NAN, True
        code = self._codes.get(value)
        return float(len(self.categories) if code is None else code), False

    @property
    def _codes(self) -> dict[str, int]:
        codes = self.__dict__.get("_code_of")
        if codes is None:
            codes = {category: code for code, category in enumerate(self.categories)}
            object.__setattr__(self, "_code_of", codes)
        return codes

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": self.categories}


@dataclass(frozen=True)
class Encoded:
    matrix: list[list[float]]
    mistyped: list[tuple[int, str]]  # (row index, feature) scored as missing because of its type


@dataclass(frozen=True)
class FeatureEncoding:
    columns: tuple[Column, ...]

    @classmethod
    def fit(
        cls, rows: Sequence[Row], max_categories: int = MAX_CATEGORIES, min_count: int = MIN_CATEGORY_COUNT
    ) -> FeatureEncoding:
        names = sorted({name for row in rows for name in row})
        columns = (_fit_column(name, [row.get(name) for row in rows], max_categories, min_count) for name in names)
        return cls(tuple(columns))

    @classmethod
    def numeric(cls, names: Sequence[str]) -> FeatureEncoding:
        return cls(tuple(Column(name) for name in names))

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def categorical(self) -> list[bool]:
        return [column.kind == "category" for column in self.columns]

    def encode(self, rows: Sequence[Row]) -> Encoded:
        matrix: list[list[float]] = []
        mistyped: list[tuple[int, str]] = []
        for index, row in enumerate(rows):
            line = []
            for column in self.columns:
                value = row.get(column.name)
                if type(value) is float and column.kind == "number":  # the common case, without a call
                    line.append(value)
                    continue
                encoded, wrong = column.encode(value)
                line.append(encoded)
                if wrong:
                    mistyped.append((index, column.name))
            matrix.append(line)
        return Encoded(matrix, mistyped)


def _fit_column(name: str, values: list[Any], max_categories: int, min_count: int) -> Column:
    texts = [value for value in values if isinstance(value, str)]
    numbers = sum(1 for value in values if value is not None and not isinstance(value, str))
    if len(texts) <= numbers:
        return Column(name)
    counts = Counter(texts)
    frequent = [category for category, count in counts.most_common(max_categories) if count >= min_count]
    return Column(name, "category", tuple(sorted(frequent)))
