"""The confluent-kafka adapter: the seam's consumer and producer over librdkafka (confluent-kafka 2.x).

Same contract as :mod:`retrain.kafka.kafka_python`; librdkafka's differences are bridged here, each in a line:
its default partitioner (CRC32) and assignor (range,roundrobin), its default isolation level (read_committed),
rebalance callbacks that run inside ``consume()`` (on the caller's thread, so no hand-over is needed), a
``seek()`` that refuses a partition whose fetch has not started yet, and a ``position()`` that knows nothing
before the first record. Topic administration stays on kafka-python (:func:`retrain.kafka.make_admin`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, Message

from retrain.kafka.errors import (
    FatalFailure,
    KafkaFailure,
    ProducerFenced,
    PublishFailed,
    RetriableFailure,
    TopicAlreadyExists,
    translating,
)
from retrain.kafka.types import Consumer, Headers, OnDelivery, RebalanceListener, Record, TopicPartition
from retrain.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bounds for the transactional calls and the broker look-ups that take a timeout (librdkafka's default: forever).
TRANSACTION_TIMEOUT_S = 60.0
# How much longer than its own timeout send_offsets_to_transaction may take before the adapter stops waiting for it
# (librdkafka can miss that timeout: issue #5456).
OVERDUE_GRACE_S = 5.0

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
# No retry cures these: not authorised, not authenticated, a feature or configuration refused, misuse.
_FATAL = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._AUTHENTICATION,
        KafkaError._INVALID_ARG,
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError._NOT_IMPLEMENTED,
        KafkaError._STATE,  # kafka-python's IllegalStateError (a transactional call out of turn) is fatal too
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.INVALID_CONFIG,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.INVALID_TRANSACTION_TIMEOUT,
    }
)
# A subscribed topic the broker does not know (yet): kafka-python waits quietly for it, and so does this adapter.
_MISSING_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})


def failure(error: KafkaError | KafkaException) -> KafkaFailure:
    """librdkafka's error as the seam's: fenced, fatal, or retriable (everything else, abortable ones included)."""
    if isinstance(error, KafkaException):
        inner = error.args[0] if error.args else None
        if not isinstance(inner, KafkaError):
            return RetriableFailure(str(error), "KafkaException")
        error = inner
    code = error.code()
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        kind: type[KafkaFailure] = TopicAlreadyExists
    elif code in _FENCED or (code == KafkaError._FATAL and "fenced" in (error.str() or "").lower()):
        # librdkafka reports a fencing as its generic _FATAL once noted; its text is the only sign left of it.
        kind = ProducerFenced
    elif error.fatal():
        kind = FatalFailure
    elif error.txn_requires_abort():
        kind = RetriableFailure  # the loop aborts the transaction and reads the batch again
    elif code in _FATAL:
        kind = FatalFailure
    else:
        kind = RetriableFailure
    return kind(error.str() or error.name(), error.name())


translated = translating(KafkaException, failure)


def _kafka_cause(error: BaseException) -> KafkaException | None:
    """The librdkafka error behind ``error`` (confluent-kafka wraps one raised inside a callback in a SystemError)."""
    seen = error.__cause__ or error.__context__
    while seen is not None and not isinstance(seen, KafkaException):
        seen = seen.__cause__ or seen.__context__
    return seen


# Metadata not yet everywhere (a topic just made, a leader moving): librdkafka's offset look-ups fail at once where
# kafka-python's retry; these are retried for up to the consumer's timeout.
_LOOKUP_RETRIED = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def _retrying_lookup(call: Callable[[], T], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as error:
            inner = error.args[0] if error.args else None
            retried = isinstance(inner, KafkaError) and inner.code() in _LOOKUP_RETRIED
            if not retried or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _ck(partition: TopicPartition, offset: int = confluent_kafka.OFFSET_INVALID) -> confluent_kafka.TopicPartition:
    return confluent_kafka.TopicPartition(partition.topic, partition.partition, offset)


def _ours(partition: confluent_kafka.TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)


def _checked(partitions: list[confluent_kafka.TopicPartition]) -> list[confluent_kafka.TopicPartition]:
    """librdkafka reports per-partition failures in the results rather than raising: raise the first."""
    for partition in partitions:
        if partition.error is not None:
            raise failure(partition.error)
    return partitions


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


# -- configuration ----------------------------------------------------------------------------------------------


def client_config(kafka_settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties common to producers and consumers. The only place a secret is revealed: never log it."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(kafka_settings.bootstrap_list),
        "client.id": kafka_settings.client_id,
        "security.protocol": kafka_settings.security_protocol.lower(),
        "socket.timeout.ms": kafka_settings.request_timeout_ms,
    }
    if kafka_settings.security_protocol.startswith("SASL_"):
        assert kafka_settings.sasl_password is not None  # checked by KafkaSettings
        config["sasl.mechanism"] = kafka_settings.sasl_mechanism
        config["sasl.username"] = kafka_settings.sasl_username
        config["sasl.password"] = kafka_settings.sasl_password.get_secret_value()
    if kafka_settings.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = "https" if kafka_settings.ssl_check_hostname else "none"
        for key, path in (
            ("ssl.ca.location", kafka_settings.ssl_cafile),
            ("ssl.certificate.location", kafka_settings.ssl_certfile),
            ("ssl.key.location", kafka_settings.ssl_keyfile),
        ):
            if path is not None:
                config[key] = str(path)
        if kafka_settings.ssl_password is not None:
            config["ssl.key.password"] = kafka_settings.ssl_password.get_secret_value()
    return config


def producer_config(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(kafka_settings),
        "enable.idempotence": True,
        "acks": "all",
        # The Java client's partitioner (librdkafka's default is CRC32): co-partitioned topics written by either
        # client put one key in one partition number. Null keys go to a random partition (Java: sticky).
        "partitioner": "murmur2_random",
        "linger.ms": linger_ms,
        "request.timeout.ms": kafka_settings.request_timeout_ms,
    }
    if batch_bytes is not None:
        config["batch.size"] = batch_bytes
    if max_request_bytes is not None:
        config["message.max.bytes"] = max_request_bytes
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    return config


def consumer_config(
    kafka_settings: KafkaSettings, group_id: str | None, *, max_poll_interval_ms: int | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(kafka_settings),
        # librdkafka wants a group id even for a reader that is assigned partitions by hand; it never commits.
        "group.id": group_id if group_id is not None else f"retrain-groupless-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # Partition n of every subscribed topic to one member (librdkafka's default adds roundrobin).
        "partition.assignment.strategy": "range",
        "session.timeout.ms": kafka_settings.session_timeout_ms,
        # A broker stopping (a restart of a one-broker cluster) can answer a metadata request with no broker at
        # all: librdkafka then drops the brokers it knew and has none left until it re-bootstraps from
        # bootstrap.servers, by default 5 minutes later. A consumer does it once it has been without metadata as
        # long as its group session lasts. (The producer replaces itself instead: see ConfluentProducer.)
        "metadata.recovery.rebootstrap.trigger.ms": kafka_settings.session_timeout_ms,
        # librdkafka defaults to read_committed; kafka-python (and this pipeline outside exactly_once) does not.
        "isolation.level": (
            "read_committed" if kafka_settings.processing_guarantee == "exactly_once" else "read_uncommitted"
        ),
    }
    if max_poll_interval_ms is not None:
        # librdkafka refuses a poll interval shorter than the session timeout.
        config["max.poll.interval.ms"] = max(max_poll_interval_ms, kafka_settings.session_timeout_ms)
    return config


def _logging_callbacks(
    note_fatal: Callable[[KafkaFailure], None] | None = None, all_brokers_down: Callable[[], None] | None = None
) -> dict[str, Any]:
    """librdkafka's log lines through Python logging, and its error events (a broker away: no exception) logged.

    ``note_fatal`` hears of a fatal error, ``all_brokers_down`` of every known broker being unreachable at once.
    """

    def error_cb(error: KafkaError) -> None:
        if error.fatal() and note_fatal is not None:
            note_fatal(failure(error))
        if error.code() == KafkaError._ALL_BROKERS_DOWN and all_brokers_down is not None:
            all_brokers_down()
        log.warning("librdkafka: %s", error.str() or error.name())

    return {"logger": log, "error_cb": error_cb}


class _FatalNoted:
    fatal: KafkaFailure | None = None

    def note_fatal(self, error: KafkaFailure) -> None:
        if self.fatal is None:
            self.fatal = error


# -- consumer ---------------------------------------------------------------------------------------------------


class ConfluentConsumer:
    def __init__(
        self,
        raw: confluent_kafka.Consumer,
        group_id: str | None,
        timeout_s: float,
        lookup_config: dict[str, Any] | None = None,
    ) -> None:
        self.raw = raw
        self.group_id = group_id
        self.timeout_s = timeout_s  # for the calls that ask the broker (commits, offsets, metadata)
        self._listener: RebalanceListener | None = None
        self._paused: set[TopicPartition] = set()
        # Where the application last sought, until a record of the partition is handed out (librdkafka's position
        # is the last handed-out record's, or nothing): what position() answers meanwhile.
        self._sought: dict[TopicPartition, int] = {}
        # Seeks librdkafka refused (_STATE: the partition's fetch has not started yet); retried at each poll, and
        # the partition's records dropped until one succeeds.
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._revoked_in_poll: set[TopicPartition] = set()
        self._starts: dict[TopicPartition, int] = {}  # where an untouched partition's reading starts (see position)
        # Watermark look-ups go through a client of their own: on the consumer's connection a broker answers them
        # only after the long-poll fetch before them (fetch.wait.max.ms, 500 ms, on an idle partition).
        self._lookup_config = lookup_config
        self._lookup: confluent_kafka.Consumer | None = None

    def _watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        if self._lookup is None and self._lookup_config is not None:
            self._lookup = confluent_kafka.Consumer(self._lookup_config)
        client = self._lookup or self.raw
        return client.get_watermark_offsets(_ck(partition), timeout=self.timeout_s)

    # rebalances: librdkafka calls these inside consume(), on the thread that polls

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self.raw.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_revoke(self, raw: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]) -> None:
        revoked = [_ours(p) for p in partitions]
        self._revoked_in_poll.update(revoked)
        self._forget(revoked)
        if revoked and self._listener is not None:
            self._listener.on_partitions_revoked(revoked)
        # librdkafka unassigns when the callback does not.

    def _on_assign(self, raw: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]) -> None:
        # Assigned before the listener hears of it, so that what it does (pause, seek) acts on assigned partitions.
        # Each starts from its committed offset (OFFSET_INVALID in the list: the group's commit, else earliest).
        raw.assign(partitions)
        if partitions:
            raw.resume(partitions)  # a new owner starts unpaused (as kafka-python's fresh partition states do)
        if self._listener is not None:
            self._listener.on_partitions_assigned([_ours(p) for p in partitions])

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._paused.discard(partition)
            self._sought.pop(partition, None)
            self._starts.pop(partition, None)
            self._pending_seeks.pop(partition, None)

    @translated
    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        if self._pending_seeks:
            self._retry_seeks()
        self._revoked_in_poll = set()
        # consume() waits out its timeout unless the whole batch is there: take what is fetched at once, else wait
        # for one record only, then what came with it.
        messages = self.raw.consume(num_messages=max_records, timeout=0)
        if not messages:
            messages = self.raw.consume(num_messages=1, timeout=timeout_s)
            if messages and max_records > 1:
                messages += self.raw.consume(num_messages=max_records - 1, timeout=0)
        revoked, self._revoked_in_poll = self._revoked_in_poll, set()
        void = revoked | self._pending_seeks.keys()
        records: list[Record] = []
        raised: KafkaFailure | None = None
        for message in messages:
            error = message.error()
            if error is not None:
                raised = raised or self._consume_error(error)
                continue
            if void and TopicPartition(message.topic(), message.partition()) in void:
                continue
            records.append(to_record(message))
        if self._sought and records:
            for record in records:
                self._sought.pop(TopicPartition(record.topic, record.partition), None)
        if revoked:
            self._reread(revoked)
        if raised is not None:
            # Raised once the batch's bookkeeping is done; its records are not handed out (positions moved past
            # them: the caller rewinds to its commits, as after any failure of a poll).
            raise raised
        return records

    def _consume_error(self, error: KafkaError) -> KafkaFailure | None:
        """The failure a consumer error event stands for; None for events that are no failure."""
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return None
        if code in _MISSING_TOPIC:
            log.warning("librdkafka: %s", error.str())
            return None
        return failure(error)

    def _reread(self, revoked: set[TopicPartition]) -> None:
        """A partition revoked and given back within one consume() is read again from its commit, as a new owner
        would: whatever this consume() returned of it was dropped, fetched before or after the rebalance."""
        kept = sorted(revoked & self.assignment())
        for partition in kept:
            committed = self.committed(partition)
            self.seek(partition, confluent_kafka.OFFSET_BEGINNING if committed is None else committed)

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        metadata = self.raw.list_topics(topic, timeout=self.timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    @translated
    def assign(self, partitions: list[TopicPartition]) -> None:
        # A reader without a group has no commit to start from: the beginning (auto_offset_reset=earliest), with
        # no look-up first. A group member starts at the group's commit.
        start = confluent_kafka.OFFSET_BEGINNING if self.group_id is None else confluent_kafka.OFFSET_INVALID
        self._forget(set(self._sought) | set(self._pending_seeks) | set(self._paused) | set(self._starts))
        self.raw.assign([_ck(p, start) for p in partitions])
        if partitions:
            self.raw.resume([_ck(p) for p in partitions])  # as kafka-python, a new assignment starts unpaused

    @translated
    def assignment(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.assignment()}

    @translated
    def position(self, partition: TopicPartition) -> int:
        sought = self._sought.get(partition)
        if sought is not None and partition in self._pending_seeks:
            return self._resolve(partition, sought)
        # librdkafka forgets the position at a seek, and knows it again once the fetch from there has gone past
        # records (handed out, or skipped: aborted ones and transaction markers).
        (found,) = _checked(self.raw.position([_ck(partition)]))
        if found.offset >= 0:
            self._sought.pop(partition, None)
            return found.offset
        if sought is not None:
            return self._resolve(partition, sought)
        # Nothing handed out since the assignment: where the fetch starts, the commit, else the beginning. Kept
        # until the next seek or assignment: an idle partition would otherwise cost broker requests at each commit.
        start = self._starts.get(partition)
        if start is None:
            committed = self.committed(partition)
            start = self._starts[partition] = committed if committed is not None else self._low(partition)
        return start

    def _resolve(self, partition: TopicPartition, offset: int) -> int:
        if offset == confluent_kafka.OFFSET_BEGINNING:
            return self._low(partition)
        if offset == confluent_kafka.OFFSET_END:
            return self.end_offsets([partition])[partition]
        return offset

    def _low(self, partition: TopicPartition) -> int:
        low, _high = self._watermarks(partition)
        return low

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        if self.group_id is None:
            return None  # a group-less reader commits nothing
        (found,) = _checked(self.raw.committed([_ck(partition)], timeout=self.timeout_s))
        return found.offset if found.offset >= 0 else None

    @translated
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.group_id is None:
            raise FatalFailure("a consumer without a group cannot commit", "NoGroup")
        if not offsets:
            return
        result = self.raw.commit(offsets=[_ck(p, offset) for p, offset in offsets.items()], asynchronous=False)
        _checked(result or [])

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self.raw.seek(_ck(partition, offset))
        except KafkaException as error:
            # librdkafka seeks only a partition whose fetch has started; one just assigned may still be looking up
            # its commit. The seek is retried at each poll, and until it holds the partition's records are dropped.
            if error.args[0].code() != KafkaError._STATE or partition not in self.assignment():
                raise
            self._pending_seeks[partition] = offset
        else:
            self._pending_seeks.pop(partition, None)
        self._sought[partition] = offset

    def _retry_seeks(self) -> None:
        for partition, offset in list(self._pending_seeks.items()):
            try:
                self.raw.seek(_ck(partition, offset))
            except KafkaException as error:
                if error.args[0].code() != KafkaError._STATE:
                    raise
            else:
                del self._pending_seeks[partition]

    def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self.seek(partition, confluent_kafka.OFFSET_BEGINNING)

    @translated
    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        if partitions:
            self.raw.pause([_ck(p) for p in partitions])
            self._paused.update(partitions)

    @translated
    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        if partitions:
            self.raw.resume([_ck(p) for p in partitions])
            self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)  # librdkafka has no query for it

    @translated
    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        # A ListOffsets request with the consumer's isolation level: under read_committed the last stable offset,
        # as kafka-python's end_offsets.
        ends: dict[TopicPartition, int] = {}
        for partition in partitions:
            _low, high = _retrying_lookup(lambda p=partition: self._watermarks(p), self.timeout_s)
            ends[partition] = high
        return ends

    @translated
    def offsets_for_times(self, times_ms: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        if not times_ms:
            return {}
        found = _checked(self.raw.offsets_for_times([_ck(p, at) for p, at in times_ms.items()], timeout=self.timeout_s))
        return {_ours(p): (p.offset if p.offset >= 0 else None) for p in found}

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            _low, high = self.raw.get_watermark_offsets(_ck(partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    @translated
    def group_metadata(self) -> object:
        return self.raw.consumer_group_metadata()

    def close(self) -> None:
        self.raw.close()  # enable.auto.commit is off: nothing is committed
        if self._lookup is not None:
            self._lookup.close()


# -- producer ---------------------------------------------------------------------------------------------------


class ConfluentProducer(_FatalNoted):
    """The seam's producer over a librdkafka producer (``raw``).

    A transactional one replaces its librdkafka producer (same transactional id; the new one's init_transactions
    fences the old one and aborts what it left open) once the old one may be stuck: every broker was unreachable at
    once (an ``_ALL_BROKERS_DOWN`` event), or one of its calls failed. librdkafka (2.16) does not always come back
    from a restart of a one-broker cluster: it decommissions the brokers it knew (at a re-bootstrap, or when the
    stopping broker answers a metadata request with no broker at all), and then either keeps the decommissioned
    broker as the group coordinator of ``send_offsets_to_transaction``, which then waits forever whatever its
    timeout (librdkafka issues #5511 and #5456), or has no broker left for minutes. A new producer starts from
    ``bootstrap.servers`` with nothing cached. The replacement happens at a safe point: at ``begin_transaction``
    or ``abort_transaction``, or at the first request of a transaction that holds nothing the caller still counts
    on (after ``forget_unflushed``). A transaction that holds records of the old producer is refused (retriable:
    the loop gives the batch up). And ``send_offsets_to_transaction`` is not waited for longer than its timeout
    and :data:`OVERDUE_GRACE_S`: the call is left behind, and the producer replaced.
    """

    def __init__(self, config: dict[str, Any], transaction_timeout_s: float = TRANSACTION_TIMEOUT_S) -> None:
        self._config = config
        self._transactional = bool(config.get("transactional.id"))
        self.transaction_timeout_s = transaction_timeout_s
        # Delivery failures of the records sent since the last flush; a record's report counts only if no flush
        # (or forget_unflushed) came between its send and its report.
        self._generation = 0
        self._failed: list[KafkaError] = []
        self._sent = 0
        # Transactional only: whether ``raw`` may be stuck (to be replaced at the next safe point), whether the
        # caller has a transaction open, and whether that transaction holds nothing the caller still counts on.
        self._suspect = False
        self._in_transaction = False
        self._disposable = True
        self.raw, self._current = self._new_raw()

    def _new_raw(self) -> tuple[confluent_kafka.Producer, list[bool]]:
        """A librdkafka producer, and the flag that says it is still ``raw`` (a replaced one's callbacks are not)."""
        current = [True]

        def note_fatal(error: KafkaFailure) -> None:
            if current[0]:  # not the replaced producer, fenced by its replacement
                self.note_fatal(error)

        def all_brokers_down() -> None:
            if current[0] and self._transactional:
                self._suspect = True

        raw = confluent_kafka.Producer({**self._config, **_logging_callbacks(note_fatal, all_brokers_down)})
        return raw, current

    @property
    def transactional(self) -> bool:
        return self._transactional

    def _delivered(
        self,
        current: list[bool],
        generation: int,
        on_delivery: OnDelivery | None,
        error: KafkaError | None,
        message: Message,
    ) -> None:
        if error is None:
            if on_delivery is not None:
                on_delivery(None, message.partition(), message.offset())
            return
        if (error.fatal() or error.code() in _FENCED) and current[0]:
            self.note_fatal(failure(error))
        if generation == self._generation:
            self._failed.append(error)
        if on_delivery is not None:
            on_delivery(failure(error), -1, -1)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        if self._transactional and (self._disposable or self._suspect):  # a transaction's first record, or trouble
            self._usable()
        report = functools.partial(self._delivered, self._current, self._generation, on_delivery)
        options: dict[str, Any] = {"key": key, "on_delivery": report}
        if headers:
            options["headers"] = headers
        if partition is not None:
            options["partition"] = partition
        while True:
            try:
                self.raw.produce(topic, value, **options)
                break
            except BufferError:
                self._call(self.raw.poll, 0.05)  # the local queue is full: serve delivery reports until there is room
            except KafkaException as error:
                # Refused before sending (a record larger than max_request_bytes, an unknown partition): raised
                # here, as kafka-python's send raises it.
                raise self._raised(error) from error
        self._disposable = False
        self._sent += 1
        self._call(self.raw.poll, 0)

    def _raised(self, error: KafkaException) -> KafkaFailure:
        """The seam's error; librdkafka's _FATAL stands for the fatal error it noted (a fencing, typically)."""
        seam = failure(error)
        if isinstance(seam, FatalFailure):
            if error.args and isinstance(error.args[0], KafkaError) and error.args[0].code() == KafkaError._FATAL:
                if self.fatal is None:  # the fatal error itself reaches error_cb, which a poll serves
                    with contextlib.suppress(Exception):
                        self.raw.poll(0)
                if self.fatal is None and self._transactional:
                    # Not told why: a new producer under the same id either carries on (it was a fencing, by far
                    # the usual cause) or meets the real error at its init_transactions.
                    seam = ProducerFenced(str(seam), seam.name)
                seam = self.fatal or seam
            self.note_fatal(seam)
        elif self._transactional:
            self._suspect = True  # replaced at the next safe point (see the class)
        return seam

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        if self.fatal is not None:  # librdkafka refuses everything after a fatal error (and confluent-kafka errs)
            raise type(self.fatal)(str(self.fatal), self.fatal.name)
        try:
            return method(*args)
        except KafkaException as error:
            raise self._raised(error) from error
        except SystemError as error:  # confluent-kafka surfaces an error met inside a delivery callback this way
            cause = _kafka_cause(error)
            if cause is not None:
                raise self._raised(cause) from error
            if self.fatal is not None:
                raise type(self.fatal)(str(self.fatal), self.fatal.name) from error
            raise RetriableFailure(str(error), "SystemError") from error

    def flush(self, timeout_s: float | None = None) -> None:
        if self._transactional:
            self._usable()  # not waiting on a producer that may be stuck
        sent, self._sent = self._sent, 0
        left = self._call(self.raw.flush, -1 if timeout_s is None else timeout_s)
        failed, self._failed = self._failed, []
        self._generation += 1
        if failed or left:
            self._suspect = self._transactional
        if failed:
            first = failed[0]
            raise PublishFailed(
                f"{len(failed)} of {sent} records were not written; the first: {first.name()}: {first.str()}",
                first.name(),
            )
        if left:
            raise PublishFailed(f"{left} records still undelivered after {timeout_s}s", "_TIMED_OUT")

    def forget_unflushed(self) -> None:
        self._failed = []
        self._sent = 0
        self._generation += 1
        self._disposable = True  # the caller gave the open transaction's records up

    def init_transactions(self) -> None:
        self._call(self.raw.init_transactions, self.transaction_timeout_s)

    def begin_transaction(self) -> None:
        self._in_transaction, self._disposable = False, True
        self._usable()
        self._call(self.raw.begin_transaction)
        self._in_transaction = True

    def _usable(self) -> None:
        """Before a transactional request: ``raw`` replaced if it may be stuck and the open transaction holds
        nothing the caller counts on; the transaction given up if it does."""
        self._call(self.raw.poll, 0)  # serves librdkafka's error events: were all brokers away meanwhile?
        if not self._suspect:
            return
        if not self._disposable:
            self._give_up()
        self._replace_raw(begin=self._in_transaction)

    def _give_up(self) -> None:
        raise RetriableFailure(
            "the transactional producer may be stuck (every broker was unreachable at once, or a call failed): this "
            "transaction is given up, and the producer replaced before the next one",
            "ProducerReplaced",
        )

    def _replace_raw(self, *, begin: bool) -> None:
        """A new librdkafka producer (same transactional id, initialised; with a transaction begun if ``begin``)
        in place of ``raw``. Failing (the brokers still away), it raises, and ``raw`` stays until the next try."""
        log.warning(
            "a new transactional producer replaces one that may be stuck (every broker was unreachable at once, or "
            "a call failed)"
        )
        fresh, current = self._new_raw()
        try:
            # Fences the old producer, and aborts the transaction it left open.
            self._call(fresh.init_transactions, self.transaction_timeout_s)
            if begin:
                self._call(fresh.begin_transaction)
        except BaseException:
            current[0] = False
            with contextlib.suppress(KafkaException, SystemError):
                fresh.purge(in_queue=True, in_flight=True, blocking=False)
            raise
        old, self.raw = self.raw, fresh
        self._current[0], self._current = False, current  # from here on, the old producer's callbacks are ignored
        self.forget_unflushed()
        with contextlib.suppress(KafkaException, SystemError):
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.poll(0)
        # What the new one met before the brokers answered is harmless: it had nothing cached yet.
        self._call(fresh.poll, 0)
        self._suspect = False

    def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], consumer: Consumer) -> None:
        positions = [_ck(p, offset) for p, offset in offsets.items()]
        if self._transactional:
            self._usable()
        self._call(
            self._bounded,
            self.raw.send_offsets_to_transaction,
            positions,
            consumer.group_metadata(),
            self.transaction_timeout_s,
        )
        self._disposable = False

    def _bounded(self, method: Callable[..., T], *args: Any) -> T:
        """``method(*args)`` (whose last argument is its timeout) on a thread of its own, waited for no longer than
        that timeout and :data:`OVERDUE_GRACE_S`; past it, left behind, and the producer replaced."""
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, method(*args)))
            except BaseException as error:  # handed to the caller
                outcome.append((False, error))

        worker = threading.Thread(target=run, name="retrain-transactional-call", daemon=True)
        worker.start()
        worker.join(args[-1] + OVERDUE_GRACE_S)
        if not outcome:
            self._suspect = True
            raise RetriableFailure(
                f"{getattr(method, '__name__', 'the call')} did not return within {args[-1] + OVERDUE_GRACE_S:.0f} s, "
                "its timeout notwithstanding (librdkafka issue #5456): left behind, and the producer replaced",
                "_TIMED_OUT",
            )
        returned, value = outcome[0]
        if not returned:
            raise value
        return value

    def commit_transaction(self) -> None:
        self._call(self.raw.poll, 0)
        if self._suspect:
            self._give_up()
        self._call(self.raw.commit_transaction, self.transaction_timeout_s)
        self._in_transaction, self._disposable = False, True

    def abort_transaction(self) -> None:
        self._call(self.raw.poll, 0)
        if self._suspect:
            # Not asked of the old producer (it may be stuck): the new one's init_transactions aborts it.
            self._replace_raw(begin=False)
        else:
            self._call(self.raw.abort_transaction, self.transaction_timeout_s)
        self._in_transaction, self._disposable = False, True

    def has_fatal_error(self) -> bool:
        return self.fatal is not None

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued within the timeout, drop the rest; librdkafka's threads end with the object."""
        try:
            left = 1 if self.fatal is not None else self.raw.flush(-1 if timeout_s is None else timeout_s)
            if left:
                self.raw.purge(in_queue=True, in_flight=True, blocking=False)
                self.raw.poll(0)
        except (KafkaException, SystemError) as error:  # a fatal producer may refuse; it is dropped either way
            log.debug("closing the producer: %s", error)


# -- construction -----------------------------------------------------------------------------------------------


@translated
def producer(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> ConfluentProducer:
    config = producer_config(
        kafka_settings,
        linger_ms=linger_ms,
        batch_bytes=batch_bytes,
        max_request_bytes=max_request_bytes,
        transactional_id=transactional_id,
    )
    return ConfluentProducer(config, max(TRANSACTION_TIMEOUT_S, kafka_settings.request_timeout_ms / 1000))


@translated
def consumer(
    kafka_settings: KafkaSettings,
    group_id: str | None,
    *,
    max_poll_records: int,
    max_poll_interval_ms: int | None,
) -> ConfluentConsumer:
    # max_poll_records is the poll's own argument in the seam (consume's num_messages): nothing to configure.
    config = consumer_config(kafka_settings, group_id, max_poll_interval_ms=max_poll_interval_ms)
    raw = confluent_kafka.Consumer({**config, **_logging_callbacks()})
    lookup = {**consumer_config(kafka_settings, None, max_poll_interval_ms=None), **_logging_callbacks()}
    return ConfluentConsumer(raw, group_id, kafka_settings.request_timeout_ms / 1000, lookup)


def raw_consume_seconds(kafka_settings: KafkaSettings, topics: list[str], total: int) -> float:
    """The benchmarks' baseline: librdkafka alone consuming ``total`` records of ``topics`` (clock from the first)."""
    import time

    config = consumer_config(kafka_settings, f"raw-{uuid.uuid4().hex[:8]}", max_poll_interval_ms=None)
    consumer = confluent_kafka.Consumer(config)
    consumer.subscribe(topics)
    seen, size, started = 0, 0, None
    while seen < total:
        messages = consumer.consume(num_messages=1_000, timeout=0.5)
        if messages and started is None:
            started = time.perf_counter()
        for message in messages:
            if message.error() is None:
                size += len(message.value())
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return elapsed
