"""The confluent-kafka adapter without a broker: error translation, librdkafka configuration, record conversion."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import SecretStr

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import KafkaError, KafkaException  # noqa: E402

from retrain.kafka import confluent  # noqa: E402
from retrain.kafka.errors import (  # noqa: E402
    FatalFailure,
    ProducerFenced,
    RetriableFailure,
    TopicAlreadyExists,
)
from retrain.kafka.types import Record  # noqa: E402
from retrain.settings import KafkaSettings  # noqa: E402


@pytest.mark.parametrize(
    ("code", "kwargs", "kind"),
    [
        (KafkaError._FENCED, {"fatal": True}, ProducerFenced),
        (KafkaError.PRODUCER_FENCED, {}, ProducerFenced),
        (KafkaError.INVALID_PRODUCER_EPOCH, {}, ProducerFenced),
        (KafkaError.INVALID_PRODUCER_EPOCH, {"txn_requires_abort": True}, ProducerFenced),
        (KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, {"fatal": True}, FatalFailure),
        (KafkaError._AUTHENTICATION, {}, FatalFailure),
        (KafkaError.SASL_AUTHENTICATION_FAILED, {}, FatalFailure),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, {}, FatalFailure),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, {}, FatalFailure),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, {}, FatalFailure),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, {}, FatalFailure),
        (KafkaError._INVALID_ARG, {}, FatalFailure),
        (KafkaError.UNSUPPORTED_VERSION, {}, FatalFailure),
        (KafkaError._STATE, {}, FatalFailure),
        (KafkaError._TRANSPORT, {}, RetriableFailure),
        (KafkaError._ALL_BROKERS_DOWN, {}, RetriableFailure),
        (KafkaError._TIMED_OUT, {"retriable": True}, RetriableFailure),
        (KafkaError._MSG_TIMED_OUT, {}, RetriableFailure),
        (KafkaError.NOT_COORDINATOR, {"retriable": True}, RetriableFailure),
        (KafkaError.MSG_SIZE_TOO_LARGE, {}, RetriableFailure),
        (KafkaError.REBALANCE_IN_PROGRESS, {}, RetriableFailure),
        (KafkaError.UNKNOWN_MEMBER_ID, {}, RetriableFailure),
        (KafkaError._MAX_POLL_EXCEEDED, {}, RetriableFailure),
        # An abortable transaction error: the loop aborts and reads the batch again.
        (KafkaError.TRANSACTION_ABORTABLE, {"txn_requires_abort": True}, RetriableFailure),
        (KafkaError._STATE, {"txn_requires_abort": True}, RetriableFailure),
        (KafkaError.TOPIC_ALREADY_EXISTS, {}, TopicAlreadyExists),
    ],
)
def test_errors_translate_to_the_seams_taxonomy(code: int, kwargs: dict, kind: type) -> None:
    error = KafkaError(code, "what librdkafka said", **kwargs)

    for raised in (error, KafkaException(error)):
        seam = confluent.failure(raised)
        assert type(seam) is kind
        assert seam.name == error.name()
        assert "what librdkafka said" in str(seam)
        assert str(seam).startswith(error.name())


def test_translated_raises_the_seams_error_from_librdkafkas() -> None:
    @confluent.translated
    def fenced() -> None:
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))

    with pytest.raises(ProducerFenced) as raised:
        fenced()
    assert isinstance(raised.value.__cause__, KafkaException)
    assert raised.value.name == "_FENCED"


def test_a_fatal_producer_error_is_fenced_when_the_noted_fatal_error_was() -> None:
    producer = confluent.ConfluentProducer.__new__(confluent.ConfluentProducer)
    producer.fatal = None
    producer.note_fatal(confluent.failure(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True)))
    # librdkafka answers every later call with _FATAL: the cause noted by error_cb is what the caller sees.
    seam = producer._raised(KafkaException(KafkaError(KafkaError._FATAL, "fatal error raised earlier", fatal=True)))
    assert type(seam) is ProducerFenced
    assert producer.has_fatal_error()


def kafka(**overrides) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="a:9092, b:9093", client="confluent-kafka", **overrides)


def test_producer_config_keeps_the_pipelines_defaults() -> None:
    config = confluent.producer_config(
        kafka(), linger_ms=7, batch_bytes=65_536, max_request_bytes=2_000_000, transactional_id="retrain-x"
    )
    assert config["bootstrap.servers"] == "a:9092,b:9093"
    assert config["client.id"] == "retrain"
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["partitioner"] == "murmur2_random"
    assert config["linger.ms"] == 7
    assert config["batch.size"] == 65_536
    assert config["message.max.bytes"] == 2_000_000
    assert config["transactional.id"] == "retrain-x"
    assert config["security.protocol"] == "plaintext"
    plain = confluent.producer_config(
        kafka(), linger_ms=5, batch_bytes=None, max_request_bytes=None, transactional_id=None
    )
    assert not {"batch.size", "message.max.bytes", "transactional.id"} & plain.keys()


@pytest.mark.parametrize(
    ("guarantee", "isolation"), [("at_least_once", "read_uncommitted"), ("exactly_once", "read_committed")]
)
def test_consumer_config_commits_only_when_told_and_assigns_by_range(guarantee: str, isolation: str) -> None:
    config = confluent.consumer_config(
        kafka(processing_guarantee=guarantee, session_timeout_ms=12_000), "group-a", max_poll_interval_ms=300_000
    )
    assert config["group.id"] == "group-a"
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["partition.assignment.strategy"] == "range"
    assert config["session.timeout.ms"] == 12_000
    assert config["metadata.recovery.rebootstrap.trigger.ms"] == 12_000  # not librdkafka's 5 minutes
    assert config["max.poll.interval.ms"] == 300_000
    assert config["isolation.level"] == isolation
    assert config["enable.partition.eof"] is False


def test_a_group_less_consumer_gets_a_group_of_its_own() -> None:
    first = confluent.consumer_config(kafka(), None, max_poll_interval_ms=None)
    second = confluent.consumer_config(kafka(), None, max_poll_interval_ms=None)
    assert first["group.id"].startswith("retrain-groupless-")
    assert first["group.id"] != second["group.id"]
    assert "max.poll.interval.ms" not in first


def test_the_poll_interval_is_never_below_the_session_timeout() -> None:
    config = confluent.consumer_config(kafka(session_timeout_ms=10_000), "g", max_poll_interval_ms=5_000)
    assert config["max.poll.interval.ms"] == 10_000


def test_sasl_ssl_settings_map_to_librdkafka_properties_and_secrets_stay_in_the_dict(tmp_path) -> None:
    settings = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("s3cret-sasl"),
        ssl_cafile=tmp_path / "ca.pem",
        ssl_certfile=tmp_path / "client.pem",
        ssl_keyfile=tmp_path / "client.key",
        ssl_password=SecretStr("s3cret-key"),
        ssl_check_hostname=False,
        request_timeout_ms=20_000,
    )
    config = confluent.client_config(settings)
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "svc"
    assert config["sasl.password"] == "s3cret-sasl"
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert config["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert config["ssl.key.location"] == str(tmp_path / "client.key")
    assert config["ssl.key.password"] == "s3cret-key"
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert config["socket.timeout.ms"] == 20_000
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "s3cret" not in shown
    checked = confluent.client_config(settings.model_copy(update={"ssl_check_hostname": True}))
    assert checked["ssl.endpoint.identification.algorithm"] == "https"


def test_plaintext_has_no_security_properties() -> None:
    config = confluent.client_config(kafka())
    assert not [key for key in config if key.startswith(("sasl.", "ssl."))]


def test_librdkafka_accepts_the_configurations() -> None:
    """librdkafka validates properties when a client is made (no connection is needed for that)."""
    settings = kafka(processing_guarantee="exactly_once")
    producer = confluent.producer(
        settings, linger_ms=5, batch_bytes=16_384, max_request_bytes=1_000_000, transactional_id="t"
    )
    assert producer.transactional
    producer.close(timeout_s=0)
    consumer = confluent.consumer(settings, None, max_poll_records=10, max_poll_interval_ms=60_000)
    consumer.close()


def test_a_bad_property_is_a_fatal_failure() -> None:
    with pytest.raises(FatalFailure):
        confluent.producer(kafka(), linger_ms=-5, batch_bytes=None, max_request_bytes=None, transactional_id=None)


def test_messages_become_records() -> None:
    message = confluent_kafka.Message(
        topic="predictions",
        partition=3,
        offset=42,
        key=b"model-1",
        value=b"{}",
        headers=[("schema", b"v1")],
        timestamp=(confluent_kafka.TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
    )
    assert confluent.to_record(message) == Record(
        "predictions", 3, 42, b"model-1", b"{}", 1_700_000_000_000, [("schema", b"v1")]
    )
    bare = confluent_kafka.Message(
        topic="t", partition=0, offset=0, timestamp=(confluent_kafka.TIMESTAMP_NOT_AVAILABLE, 0)
    )
    assert confluent.to_record(bare) == Record("t", 0, 0, None, None, -1, [])


# -- the consumer's bookkeeping, over a scripted librdkafka consumer -------------------------------------------


class FakeRaw:
    """Just enough of confluent_kafka.Consumer: consume() runs scripted rebalance callbacks, then returns messages."""

    def __init__(self) -> None:
        self.script: list = []  # per consume(): (callbacks to run, messages to return)
        self.assigned: list = []
        self.seeks: list[tuple[str, int, int]] = []
        self.refuse_seeks = 0
        self.committed_offsets: dict[tuple[str, int], int] = {}
        self.committed_asked = 0
        self.watermarks_asked = 0
        self.consumed_with: list[float] = []
        self.prefetched = False
        self.on_assign = self.on_revoke = None

    def subscribe(self, topics, on_assign, on_revoke, on_lost) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def consume(self, num_messages: int, timeout: float) -> list:
        self.consumed_with.append((num_messages, timeout))
        if timeout == 0 and not self.prefetched:
            return []  # nothing fetched yet: the adapter waits with its timeout
        callbacks, messages = self.script.pop(0)
        for kind, partitions in callbacks:
            tps = [confluent_kafka.TopicPartition(t, p) for t, p in partitions]
            if kind == "assign":
                self.on_assign(self, tps)
            else:
                self.on_revoke(self, tps)
                self.assigned = []
        return messages

    def assign(self, partitions) -> None:
        self.assigned = [(p.topic, p.partition) for p in partitions]

    def assignment(self) -> list:
        return [confluent_kafka.TopicPartition(t, p) for t, p in self.assigned]

    def resume(self, partitions) -> None:
        pass

    def seek(self, partition) -> None:
        if self.refuse_seeks:
            self.refuse_seeks -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "Failed to seek: Local: Erroneous state"))
        self.seeks.append((partition.topic, partition.partition, partition.offset))

    def get_watermark_offsets(self, partition, timeout=None, cached=False) -> tuple[int, int]:
        self.watermarks_asked += 1
        return 5, 9

    def close(self) -> None:
        pass

    def committed(self, partitions, timeout=None) -> list:
        self.committed_asked += 1
        return [
            confluent_kafka.TopicPartition(
                p.topic, p.partition, self.committed_offsets.get((p.topic, p.partition), -1001)
            )
            for p in partitions
        ]

    def position(self, partitions) -> list:
        return [confluent_kafka.TopicPartition(p.topic, p.partition, -1001) for p in partitions]


def message(partition: int, offset: int, error: KafkaError | None = None):
    return confluent_kafka.Message(
        topic="t", partition=partition, offset=offset, value=b"v", error=error, timestamp=(1, 1_000)
    )


def test_records_of_partitions_revoked_during_the_poll_are_dropped_and_kept_ones_read_from_the_commit() -> None:
    from retrain.kafka.types import TopicPartition

    raw = FakeRaw()
    raw.committed_offsets[("t", 0)] = 3
    consumer = confluent.ConfluentConsumer(raw, "group", 1.0)
    seen: list = []

    class Listener:
        def on_partitions_revoked(self, revoked):
            seen.append(("revoked", sorted(revoked)))

        def on_partitions_assigned(self, assigned):
            seen.append(("assigned", sorted(assigned)))

    consumer.subscribe(["t"], Listener())
    raw.script = [
        ([("assign", [("t", 0), ("t", 1)])], [message(0, 3), message(1, 0)]),
        # A rebalance inside one consume(): partition 0 kept, partition 1 gone to another member.
        ([("revoke", [("t", 0), ("t", 1)]), ("assign", [("t", 0)])], [message(0, 4), message(1, 1), message(0, 3)]),
        ([], [message(0, 3), message(0, 4, KafkaError(KafkaError._PARTITION_EOF))]),
    ]
    first = consumer.poll(1.0, 100)
    assert [(r.partition, r.offset) for r in first] == [(0, 3), (1, 0)]
    second = consumer.poll(1.0, 100)
    assert second == []  # nothing of a partition revoked during the poll, fetched before or after
    assert raw.seeks == [("t", 0, 3)]  # the kept partition is read again from its commit
    assert consumer.position(TopicPartition("t", 0)) == 3
    assert [(r.partition, r.offset) for r in consumer.poll(1.0, 100)] == [(0, 3)]
    assert seen == [
        ("assigned", [TopicPartition("t", 0), TopicPartition("t", 1)]),
        ("revoked", [TopicPartition("t", 0), TopicPartition("t", 1)]),
        ("assigned", [TopicPartition("t", 0)]),
    ]


def test_a_refused_seek_is_retried_and_its_partitions_records_held_back_until_it_holds() -> None:
    from retrain.kafka.types import TopicPartition

    raw = FakeRaw()
    consumer = confluent.ConfluentConsumer(raw, "group", 1.0)
    raw.assigned = [("t", 0)]
    raw.refuse_seeks = 2  # the seek itself, then the retry before the first poll
    tp = TopicPartition("t", 0)
    consumer.seek(tp, 7)
    assert consumer.position(tp) == 7
    raw.script = [([], [message(0, 0), message(0, 1)]), ([], [message(0, 7)])]
    assert consumer.poll(1.0, 100) == []  # fetched from the commit, not from where the application sought
    assert raw.seeks == []
    assert [r.offset for r in consumer.poll(1.0, 100)] == [7]
    assert raw.seeks == [("t", 0, 7)]


def test_a_consumer_error_is_raised_after_the_batch() -> None:
    raw = FakeRaw()
    consumer = confluent.ConfluentConsumer(raw, "group", 1.0)
    raw.script = [([], [message(0, 0), message(0, 1, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))])]
    with pytest.raises(FatalFailure, match="TOPIC_AUTHORIZATION_FAILED"):
        consumer.poll(1.0, 100)
    missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "Subscribed topic not available")
    raw.script = [([], [message(0, 0, missing), message(0, 2)])]
    assert [r.offset for r in consumer.poll(1.0, 100)] == [2]  # a topic not there yet: waited for, quietly


def test_what_is_already_fetched_is_handed_out_without_waiting_and_an_empty_queue_waits() -> None:
    raw = FakeRaw()
    consumer = confluent.ConfluentConsumer(raw, "group", 1.0)
    raw.script = [([], [message(0, 0)]), ([], [message(0, 1)])]
    assert [r.offset for r in consumer.poll(0.2, 100)] == [0]
    assert raw.consumed_with == [(100, 0), (1, 0.2), (99, 0)]  # nothing there: waited for one, then took the rest
    raw.prefetched, raw.consumed_with = True, []
    assert [r.offset for r in consumer.poll(0.2, 100)] == [1]
    assert raw.consumed_with == [(100, 0)]  # there at once: no wait for a full batch


def test_an_idle_partitions_position_is_looked_up_once_not_at_every_commit() -> None:
    from retrain.kafka.types import TopicPartition

    raw = FakeRaw()
    consumer = confluent.ConfluentConsumer(raw, "group", 1.0)
    committed, fresh = TopicPartition("t", 0), TopicPartition("t", 1)
    raw.committed_offsets[("t", 0)] = 3
    for _ in range(5):
        assert consumer.position(committed) == 3
        assert consumer.position(fresh) == 5  # nothing committed: the beginning (the low watermark)
    assert (raw.committed_asked, raw.watermarks_asked) == (2, 1)
    raw.script = [([], [message(1, 5)])]
    consumer.poll(1.0, 100)  # a record handed out: from now on librdkafka knows the position
    consumer.seek(committed, 7)
    assert consumer.position(committed) == 7


class FakeLookup:
    """A watermark look-up client; a stale one fails every look-up as librdkafka's did after a broker restart."""

    def __init__(self, stale: bool) -> None:
        self.stale = stale
        self.asked = 0
        self.closed = False

    def get_watermark_offsets(self, partition, timeout=None) -> tuple[int, int]:
        self.asked += 1
        if self.stale:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION, "Failed to get watermark offsets"))
        return 2, 11

    def close(self) -> None:
        self.closed = True


def test_a_look_up_client_that_failed_is_replaced_and_a_healthy_one_kept() -> None:
    from retrain.kafka.types import TopicPartition

    made: list[FakeLookup] = []

    def make() -> FakeLookup:
        made.append(FakeLookup(stale=not made))  # the first client is stale, every later one healthy
        return made[-1]

    consumer = confluent.ConfluentConsumer(FakeRaw(), "group", 5.0, make)
    tp = TopicPartition("t", 0)
    assert consumer.end_offsets([tp]) == {tp: 11}  # the retried look-up went to a new client
    assert [(c.asked, c.closed) for c in made] == [(1, True), (1, False)]
    assert consumer.end_offsets([tp, TopicPartition("t", 1)]) == {tp: 11, TopicPartition("t", 1): 11}
    assert len(made) == 2 and made[1].asked == 3  # a client that answers is kept
    consumer.close()
    assert made[1].closed


# -- the transactional producer after every broker was away, over a scripted librdkafka producer -----------------


class FakeProducer:
    """Just enough of confluent_kafka.Producer: records the calls; poll() hands queued error events to error_cb."""

    made: ClassVar[list[FakeProducer]] = []
    refuse_init: ClassVar[bool] = False  # init_transactions times out (the brokers still away)
    fail: ClassVar[set[str]] = set()  # calls that raise a retriable error
    hang: ClassVar[threading.Event | None] = None  # send_offsets_to_transaction waits for it, whatever its timeout

    def __init__(self, config: dict) -> None:
        self.config = config
        self.calls: list[str] = []
        self.events: list[KafkaError] = []  # error events librdkafka queued, served by the next poll
        FakeProducer.made.append(self)

    def poll(self, timeout: float) -> int:
        events, self.events = self.events, []
        for event in events:
            self.config["error_cb"](event)
        return 0

    def __getattr__(self, name: str):
        if name not in {
            "init_transactions",
            "begin_transaction",
            "send_offsets_to_transaction",
            "commit_transaction",
            "abort_transaction",
            "purge",
            "flush",
            "produce",
        }:
            raise AttributeError(name)

        def call(*args, **kwargs):
            if name == "init_transactions" and FakeProducer.refuse_init:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init_transactions timed out", retriable=True))
            self.calls.append(name)
            if name in FakeProducer.fail:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{name} timed out", retriable=True))
            if name == "send_offsets_to_transaction" and FakeProducer.hang is not None:
                FakeProducer.hang.wait()
            return 0

        return call


ALL_BROKERS_DOWN = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")


class Member:
    def group_metadata(self) -> object:
        return "group metadata"


@pytest.fixture
def fake_producers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeProducer]]:
    FakeProducer.made, FakeProducer.fail, FakeProducer.hang = [], set(), None
    monkeypatch.setattr(confluent.confluent_kafka, "Producer", FakeProducer)
    yield FakeProducer.made
    if FakeProducer.hang is not None:
        FakeProducer.hang.set()  # the call left behind returns


def transactional() -> confluent.ConfluentProducer:
    producer = confluent.ConfluentProducer({"transactional.id": "t", "bootstrap.servers": "a:9092"}, 5.0)
    producer.init_transactions()
    return producer


def a_transaction(producer: confluent.ConfluentProducer) -> None:
    from retrain.kafka.types import TopicPartition

    producer.begin_transaction()
    producer.send_offsets_to_transaction({TopicPartition("t", 0): 3}, Member())
    producer.commit_transaction()


def test_after_every_broker_was_away_the_next_transaction_has_a_new_librdkafka_producer(fake_producers) -> None:
    # librdkafka re-bootstraps then, and may keep the decommissioned broker as the group coordinator for
    # send_offsets_to_transaction, which would wait forever (librdkafka #5511, #5456).
    producer = transactional()
    a_transaction(producer)
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)  # the broker restarted while the service was idle
    a_transaction(producer)
    _, second = fake_producers
    assert first.calls == [
        "init_transactions",
        "begin_transaction",
        "send_offsets_to_transaction",
        "commit_transaction",
        "purge",
    ]
    # Initialised (fencing the old one) before its first transaction; the same configuration.
    assert second.calls == [
        "init_transactions",
        "begin_transaction",
        "send_offsets_to_transaction",
        "commit_transaction",
    ]
    assert second.config["transactional.id"] == "t" and producer.raw is second
    a_transaction(producer)
    assert len(fake_producers) == 2  # replaced once per outage


def test_an_empty_transaction_begun_before_every_broker_was_away_moves_to_the_new_producer(fake_producers) -> None:
    # An idle service keeps its begun transaction open; its offsets, after the outage, go through a new producer.
    from retrain.kafka.types import TopicPartition

    producer = transactional()
    producer.begin_transaction()
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)
    producer.send_offsets_to_transaction({TopicPartition("t", 0): 3}, Member())
    producer.commit_transaction()
    _, second = fake_producers
    assert first.calls == ["init_transactions", "begin_transaction", "purge"]
    assert second.calls == [
        "init_transactions",
        "begin_transaction",
        "send_offsets_to_transaction",
        "commit_transaction",
    ]


def test_the_first_record_of_a_transaction_after_every_broker_was_away_goes_to_the_new_producer(
    fake_producers,
) -> None:
    producer = transactional()
    producer.begin_transaction()
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)
    producer.send("out", b"k", b"v")
    producer.send("out", b"k", b"w")
    _, second = fake_producers
    assert "produce" not in first.calls
    assert second.calls == ["init_transactions", "begin_transaction", "produce", "produce"]


def test_the_offsets_of_a_transaction_with_records_from_before_every_broker_was_away_are_refused(
    fake_producers,
) -> None:
    from retrain.kafka.types import TopicPartition

    producer = transactional()
    producer.begin_transaction()
    producer.send("out", b"k", b"v")
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)
    with pytest.raises(RetriableFailure) as refused:
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 3}, Member())
    assert refused.value.name == "ProducerReplaced"
    assert "send_offsets_to_transaction" not in first.calls
    producer.abort_transaction()  # what the loop does with a failed batch: not asked of the old producer
    producer.forget_unflushed()
    _, second = fake_producers
    assert first.calls[-2:] == ["produce", "purge"]
    assert second.calls == ["init_transactions"]  # which aborts what the old one left open
    a_transaction(producer)
    assert len(fake_producers) == 2 and producer.raw.calls[-1] == "commit_transaction"


def test_the_replaced_producers_fencing_does_not_make_its_replacement_fatal(fake_producers) -> None:
    producer = transactional()
    a_transaction(producer)
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)
    producer.begin_transaction()
    first.config["error_cb"](KafkaError(KafkaError._FENCED, "fenced by its replacement", fatal=True))
    first.config["error_cb"](ALL_BROKERS_DOWN)
    assert not producer.has_fatal_error()
    producer.commit_transaction()
    a_transaction(producer)
    assert len(fake_producers) == 2


def test_a_replacement_that_cannot_initialise_is_made_again_at_the_next_begin(fake_producers) -> None:
    producer = transactional()
    a_transaction(producer)
    fake_producers[0].events.append(ALL_BROKERS_DOWN)
    FakeProducer.refuse_init = True
    try:
        with pytest.raises(RetriableFailure):
            producer.begin_transaction()
    finally:
        FakeProducer.refuse_init = False
    a_transaction(producer)
    assert len(fake_producers) == 3
    assert producer.raw.calls == [
        "init_transactions",
        "begin_transaction",
        "send_offsets_to_transaction",
        "commit_transaction",
    ]


def test_a_producer_outside_transactions_keeps_its_librdkafka_producer(fake_producers) -> None:
    producer = confluent.ConfluentProducer({"bootstrap.servers": "a:9092"}, 5.0)
    fake_producers[0].config["error_cb"](ALL_BROKERS_DOWN)
    producer.flush(1)
    assert len(fake_producers) == 1


def test_a_failed_call_has_the_producer_replaced_instead_of_asked_to_abort(fake_producers) -> None:
    from retrain.kafka.types import TopicPartition

    producer = transactional()
    producer.begin_transaction()
    producer.send("out", b"k", b"v")
    FakeProducer.fail = {"send_offsets_to_transaction"}
    with pytest.raises(RetriableFailure):
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 3}, Member())
    FakeProducer.fail = set()
    with pytest.raises(RetriableFailure):
        producer.commit_transaction()  # a transaction with a failure in it is not committed
    producer.abort_transaction()
    first, second = fake_producers
    assert "abort_transaction" not in first.calls and "commit_transaction" not in first.calls
    assert second.calls == ["init_transactions"]


def test_offsets_that_librdkafka_never_sends_are_not_waited_for_past_their_timeout(
    fake_producers, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from retrain.kafka.confluent import producing
    from retrain.kafka.types import TopicPartition

    monkeypatch.setattr(producing, "OVERDUE_GRACE_S", 0.2)  # where ConfluentProducer reads it
    producer = confluent.ConfluentProducer({"transactional.id": "t", "bootstrap.servers": "a:9092"}, 0.3)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("out", b"k", b"v")
    FakeProducer.hang = threading.Event()
    started = time.monotonic()
    with pytest.raises(RetriableFailure) as overdue:
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 3}, Member())
    assert 0.5 <= time.monotonic() - started < 2
    assert overdue.value.name == "_TIMED_OUT" and "#5456" in str(overdue.value)
    FakeProducer.hang = None  # the new producer's calls return
    producer.abort_transaction()
    producer.forget_unflushed()
    a_transaction(producer)
    first, second = fake_producers
    assert first.calls[-2:] == ["send_offsets_to_transaction", "purge"]  # still waiting; its records dropped
    assert second.calls[-1] == "commit_transaction"


def test_a_flush_does_not_wait_on_a_producer_that_lost_every_broker_under_its_records(fake_producers) -> None:
    producer = transactional()
    producer.begin_transaction()
    producer.send("out", b"k", b"v")
    (first,) = fake_producers
    first.events.append(ALL_BROKERS_DOWN)
    with pytest.raises(RetriableFailure) as refused:
        producer.flush()
    assert refused.value.name == "ProducerReplaced" and "flush" not in first.calls
