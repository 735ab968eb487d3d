"""Notices a partition the consumer has stopped fetching: behind its end, and its position still for checks on end.

Seen with kafka-python 3 after a broker restart under at-least-once: the trainer's consumer stayed 2,000 records
short of one partition's end, its lag reported as 0 (the high watermark of the last fetch), with no error. Nothing
else would have noticed; the loop replaces such a consumer. Pure logic, fed by the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import TypeVar

P = TypeVar("P")

CHECK_INTERVAL_S = 10.0
CHECKS = 4  # checks in a row behind the end at one position: still for three intervals (30 s) of polling


class FetchProgress:
    """Counts, per partition, the consecutive checks at which it was behind its end at an unchanged position."""

    def __init__(self, checks: int = CHECKS) -> None:
        self.checks = checks
        self._still: dict[object, tuple[int, int]] = {}  # partition -> (position, checks it has not moved)

    def observe(
        self, positions: Mapping[P, int | None], ends: Mapping[P, int], paused: Set[P] = frozenset()
    ) -> list[P]:
        """One check; returns the partitions that have stood still behind their end for ``checks`` checks.

        ``positions`` holds every assigned partition; a paused one, or one without a position yet, is not judged.
        """
        stalled = []
        for partition, position in positions.items():
            end = ends.get(partition)
            if position is None or end is None or partition in paused or position >= end:
                self._still.pop(partition, None)
                continue
            before, count = self._still.get(partition, (None, 0))
            count = count + 1 if before == position else 1
            self._still[partition] = (position, count)
            if count >= self.checks:
                stalled.append(partition)
        for partition in set(self._still) - set(positions):
            del self._still[partition]  # no longer assigned
        return stalled

    def reset(self) -> None:
        self._still.clear()
