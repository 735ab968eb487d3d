"""The Kafka client seam's contract, proven against a real broker for both adapters (kafka-python, confluent-kafka).

Each test goes through :mod:`retrain.kafka`'s factory only, so what holds here holds for any code on the seam.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from kafka.partitioner.default import murmur2

from retrain.kafka import (
    Consumer,
    ProducerFenced,
    PublishFailed,
    Record,
    RetriableFailure,
    TopicPartition,
    make_consumer,
    make_producer,
)
from retrain.settings import KafkaSettings


@pytest.fixture
def settings(kafka_settings: KafkaSettings) -> KafkaSettings:
    return kafka_settings  # once per client (the fixture is parametrized by client)


@pytest.fixture
def closing() -> Iterator[Callable]:
    """Registers clients to close at the end of the test, whatever happens."""
    opened: list = []

    def register(thing):
        opened.append(thing)
        return thing

    yield register
    for thing in reversed(opened):
        with contextlib.suppress(Exception):
            thing.close()


def java_partition(key: bytes, partitions: int) -> int:
    """The Java client's default partition for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def read_to_end(consumer: Consumer, partitions: Iterable[TopicPartition], timeout_s: float = 30) -> list[Record]:
    partitions = list(partitions)
    ends = consumer.end_offsets(partitions)
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(p) < ends[p] for p in partitions):
        assert time.monotonic() < deadline, f"did not reach {ends}"
        records.extend(consumer.poll(0.5, 500))
    return records


def produce(settings: KafkaSettings, topic: str, count: int, **kwargs) -> list[tuple[bytes, bytes]]:
    producer = make_producer(settings)
    sent = [(b"key-%d" % i, b"value-%d" % i) for i in range(count)]
    for key, value in sent:
        producer.send(topic, key, value, **kwargs)
    producer.flush(30)
    producer.close(5)
    return sent


def test_roundtrip_keyed_records_with_headers(settings: KafkaSettings, new_topic, closing):
    topic = new_topic(3)
    producer = closing(make_producer(settings))
    before_ms = int(time.time() * 1000)
    for i in range(300):
        producer.send(topic, b"key-%d" % (i % 50), b"value-%d" % i, headers=[("n", str(i).encode())])
    producer.flush(30)

    reader = closing(make_consumer(settings, None))
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic))]
    assert len(partitions) == 3
    reader.assign(partitions)
    assert reader.assignment() == set(partitions)
    reader.seek_to_beginning(partitions)
    assert all(reader.position(p) == 0 for p in partitions)
    records = read_to_end(reader, partitions)

    assert sorted(int(r.value.split(b"-")[1]) for r in records) == list(range(300))
    for record in records:
        i = int(record.value.split(b"-")[1])
        assert record.key == b"key-%d" % (i % 50)
        assert record.headers == [("n", str(i).encode())]
        assert record.partition == java_partition(record.key, 3)
        assert record.timestamp >= before_ms - 1000
    by_partition: dict[int, list[int]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record.offset)
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
    assert reader.end_offsets(partitions) == {p: len(by_partition.get(p.partition, [])) for p in partitions}
    assert {p: reader.highwater(p) for p in partitions} == reader.end_offsets(partitions)


def test_both_clients_put_a_key_in_the_partition_the_java_client_would(kafka_settings: KafkaSettings, new_topic):
    topics = {client: new_topic(6) for client in ("kafka-python", "confluent-kafka")}
    for client, topic in topics.items():
        produce(kafka_settings.model_copy(update={"client": client}), topic, 200)
    placed: dict[str, dict[bytes, int]] = {}
    for client, topic in topics.items():
        reader = make_consumer(kafka_settings, None)
        partitions = [TopicPartition(topic, p) for p in range(6)]
        reader.assign(partitions)
        placed[client] = {r.key: r.partition for r in read_to_end(reader, partitions)}
        reader.close()
    assert len(placed["confluent-kafka"]) == 200
    assert placed["confluent-kafka"] == placed["kafka-python"]
    assert all(partition == java_partition(key, 6) for key, partition in placed["kafka-python"].items())


def test_partitions_for_an_unknown_topic_are_none(settings: KafkaSettings, unique: str, closing):
    reader = closing(make_consumer(settings, None))
    assert reader.partitions_for_topic(f"no-such-topic-{unique}") == set()


class Recorder:
    """A rebalance listener that notes what it is told, and on which thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[TopicPartition]]] = []
        self.threads: set[int] = set()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("revoked", sorted(revoked)))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("assigned", sorted(assigned)))


def poll_until(consumers: list[Consumer], done: Callable[[], bool], timeout_s: float = 60) -> dict[int, list[Record]]:
    """Polls every consumer in turn (one thread: each must poll for a rebalance to complete) until ``done``."""
    records: dict[int, list[Record]] = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for i, consumer in enumerate(consumers):
            records[i].extend(consumer.poll(0.2, 500))
    return records


def test_range_assignor_gives_one_member_partition_n_of_both_topics(
    settings: KafkaSettings, new_topic, unique: str, closing
):
    predictions, labels = new_topic(3), new_topic(3)
    group = f"copartitioned-{unique}"
    members = [closing(make_consumer(settings, group)) for _ in range(2)]
    for member in members:
        member.subscribe([predictions, labels], Recorder())

    def settled() -> bool:
        assignments = [m.assignment() for m in members]
        return all(assignments) and len(assignments[0] | assignments[1]) == 6

    poll_until(members, settled)
    for member in members:
        assigned = member.assignment()
        mine = {p.partition for p in assigned if p.topic == predictions}
        assert mine == {p.partition for p in assigned if p.topic == labels}
    # Range: one member gets partitions 0 and 1 of each topic, the other partition 2 (round-robin would not).
    assert sorted(len(m.assignment()) for m in members) == [2, 4]


def test_rebalance_listener_runs_on_the_polling_thread_and_kept_partitions_are_read_again(
    settings: KafkaSettings, new_topic, unique: str, closing
):
    topic = new_topic(2)
    for partition in (0, 1):
        produce(settings, topic, 20, partition=partition)
    group = f"rebalance-{unique}"
    first, second = Recorder(), Recorder()
    one = closing(make_consumer(settings, group, max_poll_records=500))
    one.subscribe([topic], first)
    read_once: list[Record] = []
    deadline = time.monotonic() + 60
    while len(read_once) < 40:
        assert time.monotonic() < deadline
        read_once.extend(one.poll(0.2, 500))
    assert first.events[-1] == ("assigned", [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    events_before = len(first.events)

    two = closing(make_consumer(settings, group))
    two.subscribe([topic], second)
    after: list[Record] = []
    deadline = time.monotonic() + 60
    while not (len(one.assignment()) == 1 and len(two.assignment()) == 1 and len(first.events) > events_before + 1):
        assert time.monotonic() < deadline, (first.events, second.events)
        after.extend(one.poll(0.2, 500))
        two.poll(0.2, 500)
    # Nothing was committed: the partition the first member kept is read again from the beginning.
    (kept,) = one.assignment()
    deadline = time.monotonic() + 30
    while len([r for r in after if r.partition == kept.partition]) < 20:
        assert time.monotonic() < deadline, after
        after.extend(one.poll(0.2, 500))
    assert [r.offset for r in after if r.partition == kept.partition] == list(range(20))
    assert all(r.partition == kept.partition for r in after)

    assert first.threads == {threading.get_ident()}
    assert second.threads == {threading.get_ident()}
    new_events = first.events[events_before:]
    assert new_events[0] == ("revoked", [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    assert new_events[-1] == ("assigned", [kept])


def test_commit_committed_and_where_a_group_member_starts(settings: KafkaSettings, new_topic, unique: str, closing):
    topic = new_topic(1)
    produce(settings, topic, 10)
    tp = TopicPartition(topic, 0)
    group = f"commits-{unique}"
    member = closing(make_consumer(settings, group))
    member.assign([tp])
    assert member.committed(tp) is None
    assert member.position(tp) == 0  # nothing committed: the beginning, before any record
    member.commit({tp: 4})
    assert member.committed(tp) == 4
    member.close()

    again = closing(make_consumer(settings, group))
    again.assign([tp])
    assert again.committed(tp) == 4
    assert again.position(tp) == 4
    records = read_to_end(again, [tp])
    assert [r.offset for r in records] == list(range(4, 10))
    assert again.position(tp) == 10
    again.seek(tp, 7)
    assert again.position(tp) == 7
    assert [r.offset for r in read_to_end(again, [tp])] == [7, 8, 9]


def test_offsets_for_times(settings: KafkaSettings, new_topic, closing):
    topic = new_topic(1)
    tp = TopicPartition(topic, 0)
    produce(settings, topic, 5)
    time.sleep(0.05)
    since_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce(settings, topic, 5)
    reader = closing(make_consumer(settings, None))
    reader.assign([tp])
    assert reader.offsets_for_times({tp: since_ms}) == {tp: 5}
    assert reader.offsets_for_times({tp: 0}) == {tp: 0}
    assert reader.offsets_for_times({tp: since_ms + 3_600_000}) == {tp: None}


def test_pause_and_resume(settings: KafkaSettings, new_topic, closing):
    topic = new_topic(2)
    for partition in (0, 1):
        produce(settings, topic, 10, partition=partition)
    reader = closing(make_consumer(settings, None))
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    reader.assign([p0, p1])
    reader.pause([p0])
    assert reader.paused() == {p0}
    got: list[Record] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got.extend(reader.poll(0.2, 500))
    assert sorted((r.partition, r.offset) for r in got) == [(1, i) for i in range(10)]
    reader.resume([p0])
    assert reader.paused() == set()
    got = read_to_end(reader, [p0])
    assert sorted((r.partition, r.offset) for r in got) == [(0, i) for i in range(10)]


def test_transaction_abort_hides_and_commit_shows_records_and_offsets(
    settings: KafkaSettings, new_topic, unique: str, closing
):
    source, sink = new_topic(1), new_topic(1)
    produce(settings, source, 5)
    exactly_once = settings.model_copy(update={"processing_guarantee": "exactly_once"})
    src, out = TopicPartition(source, 0), TopicPartition(sink, 0)
    group = f"txn-{unique}"
    member = closing(make_consumer(exactly_once, group))
    member.assign([src])
    producer = closing(make_producer(exactly_once, transactional_id=f"txn-{unique}"))
    assert producer.transactional
    producer.init_transactions()

    producer.begin_transaction()
    for i in range(5):
        producer.send(sink, b"k", b"aborted-%d" % i)
    producer.flush(30)
    producer.send_offsets_to_transaction({src: 3}, member)
    producer.abort_transaction()
    producer.forget_unflushed()

    reader = closing(make_consumer(exactly_once, None))
    reader.assign([out])
    assert read_to_end(reader, [out]) == []
    assert member.committed(src) is None

    producer.begin_transaction()
    for i in range(5):
        producer.send(sink, b"k", b"committed-%d" % i)
    producer.send_offsets_to_transaction({src: 3}, member)
    producer.commit_transaction()
    producer.flush(30)
    assert not producer.has_fatal_error()

    # The commit's markers reach the partitions and the offsets topic just after commit_transaction returns.
    values: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while (len(values) < 5 or member.committed(src) != 3) and time.monotonic() < deadline:
        values += [r.value for r in read_to_end(reader, [out])]
        time.sleep(0.1)
    assert values == [b"committed-%d" % i for i in range(5)]
    assert member.committed(src) == 3


def test_a_reader_sought_back_reaches_the_end_of_a_partition_holding_only_aborted_records(
    settings: KafkaSettings, new_topic, unique: str, closing
):
    # After a crash under exactly_once a topic's tail can be aborted transactions alone (a state or updates topic
    # read at start-up): nothing is handed out, and the position must still pass them.
    topic = new_topic(1)
    tp = TopicPartition(topic, 0)
    exactly_once = settings.model_copy(update={"processing_guarantee": "exactly_once"})
    producer = closing(make_producer(exactly_once, transactional_id=f"aborted-{unique}"))
    producer.init_transactions()
    for attempt in range(2):
        producer.begin_transaction()
        for i in range(4):
            producer.send(topic, b"k", b"aborted-%d-%d" % (attempt, i))
        producer.flush(30)
        producer.abort_transaction()
        producer.forget_unflushed()
    reader = closing(make_consumer(exactly_once, None))
    reader.assign([tp])
    end = reader.end_offsets([tp])[tp]
    assert end == 10  # 8 records and 2 abort markers
    started = time.monotonic()
    for _ in range(2):
        reader.seek_to_beginning([tp])
        assert read_to_end(reader, [tp]) == []
    assert reader.position(tp) == end
    assert time.monotonic() - started < 10


def test_end_offsets_under_read_committed_stop_at_an_open_transaction(
    settings: KafkaSettings, new_topic, unique: str, closing
):
    topic = new_topic(1)
    tp = TopicPartition(topic, 0)
    produce(settings, topic, 4)
    exactly_once = settings.model_copy(update={"processing_guarantee": "exactly_once"})
    producer = closing(make_producer(exactly_once, transactional_id=f"open-{unique}"))
    producer.init_transactions()
    producer.begin_transaction()
    for _ in range(3):
        producer.send(topic, b"k", b"open")
    producer.flush(30)
    committed_reader = closing(make_consumer(exactly_once, None))
    committed_reader.assign([tp])
    uncommitted_reader = closing(make_consumer(settings, None))
    uncommitted_reader.assign([tp])
    assert committed_reader.end_offsets([tp]) == {tp: 4}
    assert uncommitted_reader.end_offsets([tp]) == {tp: 7}
    assert len(read_to_end(committed_reader, [tp])) == 4
    assert len(read_to_end(uncommitted_reader, [tp])) == 7
    producer.abort_transaction()


def test_a_record_larger_than_the_producer_allows_is_refused_by_send(settings: KafkaSettings, new_topic, closing):
    topic = new_topic(1)
    producer = closing(make_producer(settings, max_request_bytes=10_000))
    with pytest.raises(RetriableFailure):
        producer.send(topic, b"k", b"x" * 50_000)
    producer.send(topic, b"k", b"small")
    producer.flush(30)


def test_flush_raises_publish_failed_for_a_record_the_broker_refuses(
    settings: KafkaSettings, admin, unique: str, closing
):
    topic = f"small-records-{unique}"
    admin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1, "configs": {"max.message.bytes": "10000"}}},
        wait_for_metadata=True,
    )
    producer = closing(make_producer(settings))
    producer.send(topic, b"k", b"small")
    producer.flush(30)
    producer.send(topic, b"k", b"x" * 50_000)
    with pytest.raises(PublishFailed):
        producer.flush(30)
    # kafka-python's idempotent producer takes the broker's refusal for a fatal error and fails all that follows;
    # librdkafka's carries on. A fresh producer for what follows, so both are held to the same.
    producer = closing(make_producer(settings))
    producer.send(topic, b"k", b"x" * 50_000)
    producer.forget_unflushed()  # its transaction was aborted, say: the flush no longer answers for it
    producer.flush(30)
    producer = closing(make_producer(settings))
    producer.send(topic, b"k", b"after")
    producer.flush(30)

    reader = closing(make_consumer(settings, None))
    reader.assign([TopicPartition(topic, 0)])
    assert [r.value for r in read_to_end(reader, [TopicPartition(topic, 0)])] == [b"small", b"after"]


def test_a_fenced_producer_raises_producer_fenced(settings: KafkaSettings, new_topic, unique: str, closing):
    topic = new_topic(1)
    exactly_once = settings.model_copy(update={"processing_guarantee": "exactly_once"})
    old = closing(make_producer(exactly_once, transactional_id=f"fenced-{unique}"))
    old.init_transactions()
    old.begin_transaction()
    old.send(topic, b"k", b"from the old producer")
    old.flush(30)

    new = closing(make_producer(exactly_once, transactional_id=f"fenced-{unique}"))
    new.init_transactions()  # fences the old one and aborts its transaction

    with pytest.raises(ProducerFenced):
        old.commit_transaction()
    assert old.has_fatal_error()
    assert not new.has_fatal_error()

    new.begin_transaction()
    new.send(topic, b"k", b"from the new producer")
    new.commit_transaction()
    reader = closing(make_consumer(exactly_once, None))
    reader.assign([TopicPartition(topic, 0)])
    assert [r.value for r in read_to_end(reader, [TopicPartition(topic, 0)])] == [b"from the new producer"]


def test_a_seek_right_after_a_group_members_assignment_holds(settings: KafkaSettings, new_topic, unique: str, closing):
    """librdkafka refuses to seek a partition still looking up its commit; the adapter's seek holds regardless."""
    topic = new_topic(1)
    tp = TopicPartition(topic, 0)
    produce(settings, topic, 10)
    member = closing(make_consumer(settings, f"seek-{unique}"))
    member.assign([tp])
    member.seek(tp, 6)
    assert member.position(tp) == 6
    assert [r.offset for r in read_to_end(member, [tp])] == [6, 7, 8, 9]
    member.seek_to_beginning([tp])
    assert member.position(tp) == 0
    assert [r.offset for r in read_to_end(member, [tp])] == list(range(10))


class Rewinder(Recorder):
    """Does on assignment what the services do: pause one partition, seek the other."""

    def __init__(self, consumer_box: list[Consumer], paused: TopicPartition, sought: TopicPartition) -> None:
        super().__init__()
        self.box, self.to_pause, self.to_seek = consumer_box, paused, sought

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        super().on_partitions_assigned(assigned)
        consumer = self.box[0]
        consumer.pause([self.to_pause])
        consumer.seek(self.to_seek, 15)


def test_pause_and_seek_from_the_assignment_listener(settings: KafkaSettings, new_topic, unique: str, closing):
    topic = new_topic(2)
    for partition in (0, 1):
        produce(settings, topic, 20, partition=partition)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    box: list[Consumer] = []
    member = closing(make_consumer(settings, f"listener-{unique}"))
    box.append(member)
    listener = Rewinder(box, paused=p0, sought=p1)
    member.subscribe([topic], listener)
    got: list[Record] = []
    deadline = time.monotonic() + 30
    while len(got) < 5 or time.monotonic() < deadline - 25:
        assert time.monotonic() < deadline, (listener.events, got)
        got.extend(member.poll(0.2, 500))
    assert listener.events == [("assigned", [p0, p1])]
    assert member.paused() == {p0}
    assert [(r.partition, r.offset) for r in got] == [(1, i) for i in range(15, 20)]
    assert member.position(p1) == 20
    member.resume([p0])
    got = read_to_end(member, [p0])
    assert [(r.partition, r.offset) for r in got] == [(0, i) for i in range(20)]
