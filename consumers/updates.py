"""Following ``model-updates`` from its beginning, group-less: every instance learns every model's version.

The detector (fresh baselines) and the scorer (hot swaps) read the trainer's answers the same way: catch up on
the whole topic at start-up, then poll it between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from retrain.consumers.decoding import decode_record
from retrain.kafka import Consumer, Record, TopicPartition, read_partitions_to_end
from retrain.schemas import ModelUpdatedEvent

log = logging.getLogger(__name__)


class ModelUpdates:
    def __init__(self, consumer: Consumer, topic: str, on_update: Callable[[ModelUpdatedEvent], None]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.on_update = on_update

    def catch_up(self) -> bool:
        """Read the topic from its beginning to its current end; False (and nothing read) if it has no partitions."""
        partitions = self.consumer.partitions_for_topic(self.topic)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not assigned:
            log.warning(
                "topic %s has no partitions: model updates are not followed (create the topics first)", self.topic
            )
            return False
        for record in read_partitions_to_end(self.consumer, assigned, timeout_s=None, past_end=True):
            self._apply(record)
        return True

    def poll(self, timeout_s: float = 0.0) -> None:
        for record in self.consumer.poll(timeout_s, 500):
            self._apply(record)

    def _apply(self, record: Record) -> None:
        try:
            update = decode_record(record, ModelUpdatedEvent)
        except ValueError:
            return  # the trainer's own topic; a bad record there is the trainer's to report
        self.on_update(update)

    def close(self) -> None:
        self.consumer.close()
