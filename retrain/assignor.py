"""The range assignment, with a note of the subscribed topics it had to leave out.

kafka-python 3's group leader can assign while its metadata has no partitions for a subscribed topic (a topic just
created, or a broker briefly fenced under load): it logs "No partition metadata for topic ..." and hands that
topic to nobody. It is meant to rebalance when its metadata changes; in the tests it sometimes never did, and a
service sat for minutes with nothing to read and nothing in its log. This assignor remembers what it left out,
so that :class:`consumers.runtime.ConsumeLoop` can make the group rebalance once the metadata has those topics.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka.coordinator.assignors.range import RangePartitionAssignor

GRACE_S = 10.0  # kafka-python's own rebalance on a metadata change gets this long (metadata refreshes every 5 s)
GIVE_UP_S = 30.0  # then the group rebalances whatever this consumer's metadata says


class WatchfulRangeAssignor(RangePartitionAssignor):
    """kafka-python's range assignor (same protocol name, so it mixes with plain range members)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.left_out: frozenset[str] = frozenset()
        self.left_out_at: float | None = None
        self._cluster = None

    def assign(self, cluster, members):  # type: ignore[override]  # an instance's, not the class's
        """Called on the group leader only, on kafka-python's IO thread."""
        topics = {topic for member in members for topic in member.metadata.topics}
        self._cluster = cluster
        self.left_out = frozenset(topic for topic in topics if not cluster.partitions_for_topic(topic))
        self.left_out_at = self.clock() if self.left_out else None
        return super().assign(cluster, members)

    def must_reassign(self) -> bool:
        """The last assignment left topics out, and the metadata now has their partitions (after ``GRACE_S``), or
        ``GIVE_UP_S`` went by: this consumer's metadata may never get them (seen: a detector's stayed without its
        two topics for 120 s while the scorer and trainer, started with it, had theirs), a new consumer asks anew.
        """
        if not self.left_out or self.left_out_at is None or self._cluster is None:
            return False
        waited = self.clock() - self.left_out_at
        if waited < GRACE_S:
            return False
        return waited >= GIVE_UP_S or all(self._cluster.partitions_for_topic(topic) for topic in self.left_out)
