"""A fit in flight: the trainer's record of one challenger being fitted, from its start to its answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from retrain.registry import ModelVersionInfo
from retrain.schemas import RetrainEvent


@dataclass
class Fit:
    """A challenger being fitted for ``event``, the newest retrain event of its model."""

    event: RetrainEvent
    source: tuple[int, int]  # (partition, offset) of the oldest retrain event it answers: the commit limit
    champion: ModelVersionInfo | None
    n_samples: int
    first: datetime | None
    last: datetime | None
    orphan: bool = False  # its event's partition was revoked: the result is dropped unless the event comes back
