"""The detector's state changelog on a real broker: a snapshot over Kafka's 1 MiB record limit is written in chunks.

Hundreds of models in one partition make a snapshot of several hundred KB (about 3 KB per model); one record of
that size is refused by a broker with default settings, and a detector that cannot write its snapshot cannot
commit. Chunked, it is written and read back byte for byte.
"""

from __future__ import annotations

import random
import time

import pytest
from kafka import TopicPartition

from retrain import kafka as seam
from retrain.consumers.state import MAX_RECORD_BYTES, StateChangelog
from retrain.kafka import PublishFailed
from retrain.producers import EventPublisher
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import make_consumer

pytestmark = pytest.mark.kafka


def changelog(kafka: KafkaSettings, topics: TopicSettings, **options) -> StateChangelog:
    publisher = EventPublisher(seam.make_producer(kafka, max_request_bytes=4 * 1024 * 1024), topics)
    return StateChangelog(publisher, seam.make_consumer(kafka, None), topics.detector_state, **options)


def closed(state: StateChangelog) -> None:
    state.publisher.producer.close()
    state.close()


def test_a_snapshot_larger_than_a_record_round_trips_in_chunks(
    kafka_settings: KafkaSettings, created_topics: TopicSettings
):
    rng = random.Random(7)
    large = rng.randbytes(5 * MAX_RECORD_BYTES // 2 + 11)  # incompressible, over 1 MiB: 3 chunks
    small = rng.randbytes(1_000)

    writer = changelog(kafka_settings, created_topics)
    try:
        writer.save(1, large)
        writer.publisher.flush()
    finally:
        closed(writer)

    reader = changelog(kafka_settings, created_topics)
    try:
        assert reader.load(1) == large
        assert reader.load(0) is None  # another partition: nothing written
        reader.save(1, small)  # after a load, the writer knows the 2 chunk keys beyond the first to tombstone
        reader.publisher.flush()
        assert reader.load(1) == small
    finally:
        closed(reader)

    # What the topic holds: 3 chunks and a manifest, then 3 tombstones and the small snapshot.
    consumer = make_consumer(kafka_settings, None)
    try:
        tp = TopicPartition(created_topics.detector_state, 1)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + 30
        while len(records) < 8 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1_000).values():
                records += [(r.key, None if r.value is None else len(r.value)) for r in batch]
    finally:
        consumer.close()
    assert records == [
        (b"1.0", MAX_RECORD_BYTES),
        (b"1.1", MAX_RECORD_BYTES),
        (b"1.2", len(large) - 2 * MAX_RECORD_BYTES),
        (b"1", records[3][1]),
        (b"1.0", None),
        (b"1.1", None),
        (b"1.2", None),
        (b"1", 1_000),
    ]
    assert records[3][1] < 200  # the manifest


def test_one_record_of_that_size_is_refused_by_the_broker(kafka_settings: KafkaSettings, created_topics: TopicSettings):
    """Why chunks: the same snapshot as one record does not get written (and the writer is told)."""
    unchunked = changelog(kafka_settings, created_topics, max_record_bytes=2**31)
    try:
        unchunked.save(2, random.Random(7).randbytes(5 * MAX_RECORD_BYTES // 2 + 11))
        with pytest.raises(PublishFailed, match=r"MessageSizeTooLarge|MSG_SIZE_TOO_LARGE"):
            unchunked.publisher.flush()
    finally:
        closed(unchunked)
