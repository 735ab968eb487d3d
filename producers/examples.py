"""What a stream yields: an :class:`Example`, the features and target of one event (and its time, if known)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# What an event carries as a feature value: a finite number, a boolean, a category (a string), or None (missing).
from retrain.schemas.types import FeatureValue

Target = bool | int | float | str


@dataclass(frozen=True)
class Example:
    features: dict[str, FeatureValue]
    target: Target
    timestamp: datetime | None = None  # from the CSV's timestamp column, when it has one
