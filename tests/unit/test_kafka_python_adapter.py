"""The kafka-python adapter without a broker: its own choice of partition is the default partitioner's."""

from __future__ import annotations

import random
import sys

import pytest
from kafka.partitioner.default import DefaultPartitioner

from retrain.kafka.kafka_python import KafkaPythonProducer


class Metadata:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions.get(topic, set())


class Raw:
    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata
        self.sent: list[tuple[str, bytes | None, int | None]] = []

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        self.sent.append((topic, key, partition))
        return Future()


class Future:
    def add_callback(self, _callback) -> None: ...

    def add_errback(self, _errback) -> None: ...


def test_a_keyed_record_goes_where_kafka_pythons_default_partitioner_would_send_it() -> None:
    rng = random.Random(5)
    metadata = Metadata({f"t{n}": set(range(n)) for n in (1, 2, 3, 6, 7, 64)})
    producer = KafkaPythonProducer(Raw(metadata))  # type: ignore[arg-type]
    reference = DefaultPartitioner()
    keys = [b"", b"model-1", "modèle".encode(), *(rng.randbytes(rng.randrange(1, 40)) for _ in range(300))]
    for topic in metadata.partitions:
        for key in keys * 2:  # the second time from the cache
            expected = reference.partition(topic, key, key, None, None, metadata)
            assert producer._partition(topic, key) == expected


def test_records_without_a_key_or_to_an_unknown_topic_are_left_to_kafka_python() -> None:
    raw = Raw(Metadata({"known": {0, 1, 2}}))
    producer = KafkaPythonProducer(raw)  # type: ignore[arg-type]
    producer.send("known", None, b"v")
    producer.send("unknown", b"k", b"v")
    producer.send("known", b"k", b"v", partition=2)
    assert raw.sent == [("known", None, None), ("unknown", b"k", None), ("known", b"k", 2)]


def test_the_switch_interval_is_lengthened_for_kafka_pythons_io_threads_never_shortened() -> None:
    from retrain.kafka import kafka_python

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        kafka_python._longer_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(kafka_python.SWITCH_INTERVAL_S, abs=1e-5)
        sys.setswitchinterval(0.2)
        kafka_python._longer_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(0.2, abs=1e-5)  # microsecond resolution
    finally:
        sys.setswitchinterval(before)


@pytest.fixture
def unreachable_consumer():
    """A real kafka-python consumer whose bootstrap server does not exist: nothing it asks is ever answered."""
    from kafka import KafkaConsumer

    from tests.helpers.processes import free_port

    raw = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{free_port()}", group_id="g", api_version=(3, 9), enable_auto_commit=False
    )
    yield raw
    raw.close(autocommit=False)


def in_time(call, seconds: float = 30.0):
    """The call's result, or its exception; a call still blocked after ``seconds`` fails the test."""
    import threading

    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as error:  # the caller inspects it
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_a_known_position_is_read_from_the_client_without_waiting_for_the_broker(unreachable_consumer) -> None:
    from kafka import TopicPartition as KafkaTopicPartition

    from retrain.kafka.kafka_python import KafkaPythonConsumer
    from retrain.kafka.types import TopicPartition

    unreachable_consumer.assign([KafkaTopicPartition("t", 0), KafkaTopicPartition("t", 1)])
    unreachable_consumer.seek(KafkaTopicPartition("t", 0), 42)
    consumer = KafkaPythonConsumer(unreachable_consumer)
    # kafka-python's own position() first asks the coordinator for t[1]'s committed offset, for ever here.
    assert in_time(lambda: consumer.position(TopicPartition("t", 0))) == 42
