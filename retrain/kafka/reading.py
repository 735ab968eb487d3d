"""Small things every caller of the seam needs: write one record and wait for it, read topics to their end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

from retrain.kafka.errors import KafkaFailure, PublishFailed, RetriableFailure
from retrain.kafka.types import Consumer, Headers, Producer, Record, TopicPartition


class Delivered(NamedTuple):
    topic: str
    partition: int
    offset: int


def send_and_wait(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None = None,
    timeout_s: float = 30.0,
) -> Delivered:
    """Write one record and wait until the broker has it; raises a :class:`KafkaFailure` when it does not."""
    outcome: list[tuple[Exception | None, int, int]] = []
    producer.send(topic, key, value, headers, on_delivery=lambda error, p, o: outcome.append((error, p, o)))
    producer.flush(timeout_s)
    if not outcome:
        raise PublishFailed(f"no delivery report for a record to {topic} within {timeout_s:.0f}s")
    error, partition, offset = outcome[0]
    if error is not None:
        raise error if isinstance(error, KafkaFailure) else PublishFailed(str(error))
    return Delivered(topic, partition, offset)


def read_to_end(consumer: Consumer, topics: list[str], timeout_s: float = 60.0) -> Iterator[Record]:
    """Every record of ``topics`` from the beginning to the end they had when asked (a group-less consumer)."""
    partitions = [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic))]
    if partitions:
        yield from read_partitions_to_end(consumer, partitions, timeout_s)


def read_partitions_to_end(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float | None = 60.0, *, past_end: bool = False
) -> Iterator[Record]:
    """Every record of ``partitions`` from their beginning to the end they had when asked.

    ``past_end``: also the records the last polls return beyond that end (for a caller that goes on following the
    partitions, so none is skipped). Raises :class:`RetriableFailure` when the end is not reached within
    ``timeout_s`` (None: as long as it takes).
    """
    consumer.assign(partitions)
    consumer.seek_to_beginning(partitions)
    ends = consumer.end_offsets(partitions)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while any(consumer.position(p) < ends[p] for p in partitions):
        if deadline is not None and time.monotonic() > deadline:
            where = ", ".join(f"{p.topic}[{p.partition}]" for p in partitions)
            raise RetriableFailure(f"could not read {where} to their end in {timeout_s:.0f}s", "KafkaTimeoutError")
        for record in consumer.poll(0.5, 1_000):
            if past_end or record.offset < ends[TopicPartition(record.topic, record.partition)]:
                yield record


def read_at(consumer: Consumer, topic: str, partition: int, offset: int, timeout_s: float = 10.0) -> Record:
    """The record at exactly (topic, partition, offset)."""
    where = TopicPartition(topic, partition)
    consumer.assign([where])
    consumer.seek(where, offset)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in consumer.poll(0.5, 1):
            if record.offset == offset:
                return record
    raise RetriableFailure(f"could not read back {topic}[{partition}]@{offset} within {timeout_s:.0f}s")
