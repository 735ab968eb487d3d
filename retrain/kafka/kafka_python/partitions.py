"""Topic partitions, from kafka-python's type to the seam's and back."""

from __future__ import annotations

import kafka

from retrain.kafka.types import TopicPartition


def _kp(partition: TopicPartition) -> kafka.TopicPartition:
    return kafka.TopicPartition(partition.topic, partition.partition)


def _ours(partition: kafka.TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)
