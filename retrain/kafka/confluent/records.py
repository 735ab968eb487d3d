"""Partitions and consumed records, from librdkafka's types to the seam's and back."""

from __future__ import annotations

import confluent_kafka
from confluent_kafka import Message

from retrain.kafka.types import Record, TopicPartition


def _ck(partition: TopicPartition, offset: int = confluent_kafka.OFFSET_INVALID) -> confluent_kafka.TopicPartition:
    return confluent_kafka.TopicPartition(partition.topic, partition.partition, offset)


def _ours(partition: confluent_kafka.TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)


def to_record(message: Message) -> Record:
    """A consumed librdkafka message (``error()`` None) as the seam's record."""
    kind, timestamp = message.timestamp()
    return Record(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        -1 if kind == confluent_kafka.TIMESTAMP_NOT_AVAILABLE else timestamp,
        message.headers() or [],
    )
