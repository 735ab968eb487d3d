"""The kafka-python adapter: the seam's consumer, producer and admin over kafka-python 3.

kafka-python's own quirks are worked around here and nowhere else; each workaround says why in a line.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import (
    AuthorizationError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

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

_FENCED = (ProducerFencedError, InvalidProducerEpochError)
_FATAL = (
    AuthorizationError,
    SaslAuthenticationFailedError,
    IllegalStateError,
    KafkaConfigurationError,
    UnsupportedVersionError,
)


def failure(error: KafkaError) -> KafkaFailure:
    """kafka-python's error as the seam's: fenced, fatal, or retriable (everything else)."""
    if isinstance(error, TopicAlreadyExistsError):
        kind: type[KafkaFailure] = TopicAlreadyExists
    elif isinstance(error, _FENCED):
        kind = ProducerFenced
    elif isinstance(error, _FATAL):
        kind = FatalFailure
    else:
        kind = RetriableFailure
    return kind(str(error), type(error).__name__)


def _as_failure(error: BaseException) -> BaseException:
    return failure(error) if isinstance(error, KafkaError) else error


translated = translating(KafkaError, failure)


def _kp(partition: TopicPartition) -> kafka.TopicPartition:
    return kafka.TopicPartition(partition.topic, partition.partition)


def _ours(partition: kafka.TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)


# -- consumer ---------------------------------------------------------------------------------------------------


class _Rebalances(kafka.ConsumerRebalanceListener):
    """Notes rebalances on kafka-python's IO thread (where nothing may block) for delivery on the polling thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, list[TopicPartition]]] = []

    def on_partitions_revoked(self, revoked: list[kafka.TopicPartition]) -> None:
        with self.lock:
            self.events.append(("revoked", [_ours(p) for p in revoked]))

    def on_partitions_assigned(self, assigned: list[kafka.TopicPartition]) -> None:
        with self.lock:
            self.events.append(("assigned", [_ours(p) for p in assigned]))

    def take(self) -> list[tuple[str, list[TopicPartition]]]:
        with self.lock:
            events, self.events = self.events, []
        return events


class KafkaPythonConsumer:
    def __init__(self, raw: KafkaConsumer) -> None:
        self.raw = raw
        self._listener: RebalanceListener | None = None
        self._rebalances = _Rebalances()

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self.raw.subscribe(topics, listener=self._rebalances)
        # kafka-python's coordinator notes the subscribed topics' partitions only from metadata updates; one that
        # came after its first assignment made every start rebalance twice. topics() always asks the broker.
        self.raw.topics()

    @translated
    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        batches = self.raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        dropped = self._deliver_rebalances(batches)
        records: list[Record] = []
        for partition, fetched in batches.items():
            if partition in dropped:
                continue
            records.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.headers or []) for r in fetched
            )
        return records

    def _deliver_rebalances(self, batches: dict) -> set[kafka.TopicPartition]:
        """Tell the listener of the rebalances since the last poll; the partitions whose fetched records are void.

        kafka-python 3 keeps a partition's fetch position when a rebalance revokes it and gives it straight back
        (Java resets it), while the listener dropped its state on the revocation: such a partition is read again
        from its committed offset, as a new owner would, and what was fetched from the kept position is dropped.
        The listener hears of an assignment after kafka-python fetched for it, so a partition it pauses or seeks
        gives up what this poll fetched (a paused one is read from there once resumed).
        """
        events = self._rebalances.take()
        if not events or self._listener is None:
            return set()
        void: set[kafka.TopicPartition] = set()
        revoked_last: set[TopicPartition] = set()
        for kind, partitions in events:
            if kind == "revoked":
                revoked_last = set(partitions)
                void |= {_kp(p) for p in partitions}
                if partitions:
                    self._listener.on_partitions_revoked(partitions)
                continue
            assigned = self.raw.assignment()
            for partition in sorted(set(partitions) & revoked_last):
                if _kp(partition) in assigned:
                    committed = self.raw.committed(_kp(partition))
                    if committed is None:
                        self.raw.seek_to_beginning(_kp(partition))
                    else:
                        self.raw.seek(_kp(partition), committed)
            revoked_last = set()
            fetched_from = {
                _kp(p): batches[_kp(p)][0].offset for p in partitions if batches.get(_kp(p)) and _kp(p) not in void
            }
            fetched_to = {p: self.raw.position(p) for p in fetched_from}
            self._listener.on_partitions_assigned(partitions)
            paused = self.raw.paused()
            for partition, first in fetched_from.items():
                if self.raw.position(partition) != fetched_to[partition]:  # sought by the listener
                    void.add(partition)
                elif partition in paused:
                    void.add(partition)
                    self.raw.seek(partition, first)
        return void

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.raw.partitions_for_topic(topic) or ())

    @translated
    def assign(self, partitions: list[TopicPartition]) -> None:
        self.raw.assign([_kp(p) for p in partitions])

    def assignment(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.assignment()}

    @translated
    def position(self, partition: TopicPartition) -> int:
        return self.raw.position(_kp(partition))

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        return self.raw.committed(_kp(partition))

    @translated
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.raw.commit({_kp(p): OffsetAndMetadata(offset, "", -1) for p, offset in offsets.items()})

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.raw.seek(_kp(partition), offset)

    @translated
    def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.seek_to_beginning(*(_kp(p) for p in partitions))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.pause(*(_kp(p) for p in partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.raw.resume(*(_kp(p) for p in partitions))

    def paused(self) -> set[TopicPartition]:
        return {_ours(p) for p in self.raw.paused()}

    @translated
    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_ours(p): offset for p, offset in self.raw.end_offsets([_kp(p) for p in partitions]).items()}

    @translated
    def offsets_for_times(self, times_ms: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        found = self.raw.offsets_for_times({_kp(p): at for p, at in times_ms.items()})
        return {_ours(p): (None if at is None else at.offset) for p, at in found.items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.raw.highwater(_kp(partition))

    @translated
    def group_metadata(self) -> object:
        return self.raw.group_metadata()

    def close(self) -> None:
        self.raw.close(autocommit=False)


# -- producer ---------------------------------------------------------------------------------------------------


_KEY_HASHES_KEPT = 100_000


class KafkaPythonProducer:
    def __init__(self, raw: KafkaProducer) -> None:
        self.raw = raw
        self._unflushed: list[Any] = []  # the futures of records sent since the last flush
        # Each key's murmur2 hash, as kafka-python's default partitioner computes it: in pure Python it was a fifth
        # of a send's cost, and the keys (model ids) repeat.
        self._key_hashes: dict[bytes, int] = {}

    @property
    def transactional(self) -> bool:
        return bool(self.raw.config.get("transactional_id"))

    @translated
    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        if partition is None and key is not None:
            partition = self._partition(topic, key)
        future = self.raw.send(topic, key=key, value=value, headers=headers, partition=partition)
        if on_delivery is not None:
            future.add_callback(lambda meta: on_delivery(None, meta.partition, meta.offset))
            future.add_errback(lambda error: on_delivery(_as_failure(error), -1, -1))
        self._unflushed.append(future)

    def _partition(self, topic: str, key: bytes) -> int | None:
        """The default partitioner's choice (murmur2 over all partitions), None while the topic is unknown."""
        partitions = self.raw._metadata.partitions_for_topic(topic)
        if not partitions:
            return None  # kafka-python waits for the metadata, then partitions itself
        hashed = self._key_hashes.get(key)
        if hashed is None:
            if len(self._key_hashes) >= _KEY_HASHES_KEPT:
                self._key_hashes.clear()
            hashed = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return sorted(partitions)[hashed % len(partitions)]

    @translated
    def flush(self, timeout_s: float | None = None) -> None:
        sent, self._unflushed = self._unflushed, []
        self.raw.flush(timeout=timeout_s)
        # kafka-python's flush returns quietly when a record's delivery failed: look at every future.
        failed = [future.exception for future in sent if future.failed()]
        if failed:
            raise PublishFailed(f"{len(failed)} of {len(sent)} records were not written; the first: {failed[0]!r}")

    def forget_unflushed(self) -> None:
        self._unflushed = []

    @translated
    def init_transactions(self) -> None:
        self.raw.init_transactions()

    @translated
    def begin_transaction(self) -> None:
        self.raw.begin_transaction()

    @translated
    def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], consumer: Consumer) -> None:
        self.raw.send_offsets_to_transaction(
            {_kp(p): OffsetAndMetadata(offset, "", -1) for p, offset in offsets.items()}, consumer.group_metadata()
        )

    @translated
    def commit_transaction(self) -> None:
        self.raw.commit_transaction()

    @translated
    def abort_transaction(self) -> None:
        self.raw.abort_transaction()

    def has_fatal_error(self) -> bool:
        manager = getattr(self.raw, "_transaction_manager", None)
        return manager is not None and manager.has_fatal_error()

    def close(self, timeout_s: float | None = None) -> None:
        self.raw.close(timeout=timeout_s)


# -- admin ------------------------------------------------------------------------------------------------------


class KafkaPythonAdmin:
    def __init__(self, raw: KafkaAdminClient) -> None:
        self.raw = raw

    @translated
    def partition_counts(self, names: Iterable[str]) -> dict[str, int]:
        present = set(self.raw.list_topics()) & set(names)
        if not present:
            return {}
        return {topic["name"]: len(topic["partitions"]) for topic in self.raw.describe_topics(sorted(present))}

    @translated
    def create_topics(self, topics: dict[str, tuple[int, int, dict[str, str]]]) -> None:
        """Create ``{name: (partitions, replication factor, configs)}``; returns once their metadata is known."""
        self.raw.create_topics(
            {
                name: {"num_partitions": partitions, "replication_factor": replication, "configs": configs}
                for name, (partitions, replication, configs) in topics.items()
            },
            wait_for_metadata=True,
        )

    def close(self) -> None:
        self.raw.close()


# -- construction -----------------------------------------------------------------------------------------------


def raw_producer(kafka_settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent kafka-python producer that waits for all in-sync replicas (no silent loss)."""
    config: dict[str, Any] = {
        **kafka_settings.client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def raw_consumer(kafka_settings: KafkaSettings, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer that commits only when told to and assigns partitions by range."""
    config: dict[str, Any] = {
        **kafka_settings.client_config(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "partition_assignment_strategy": [RangePartitionAssignor],
        # kafka-python 3's group leader can assign before it has the subscribed topics' metadata and hand out
        # nothing; it rebalances when its metadata changes, so refresh metadata often (default: 5 minutes).
        "metadata_max_age_ms": 5_000,
    }
    if group_id is not None:
        config["session_timeout_ms"] = kafka_settings.session_timeout_ms
    if kafka_settings.processing_guarantee == "exactly_once":
        config["isolation_level"] = "read_committed"
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def raw_admin(kafka_settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**kafka_settings.client_config(), **overrides})


@translated
def producer(
    kafka_settings: KafkaSettings,
    *,
    linger_ms: int,
    batch_bytes: int | None,
    max_request_bytes: int | None,
    transactional_id: str | None,
) -> KafkaPythonProducer:
    _longer_switch_interval()  # the producer's sender is a Python thread too
    overrides: dict[str, Any] = {"linger_ms": linger_ms}
    if batch_bytes is not None:
        overrides["batch_size"] = batch_bytes
    if max_request_bytes is not None:
        overrides["max_request_size"] = max_request_bytes
    if transactional_id is not None:
        overrides["transactional_id"] = transactional_id
    return KafkaPythonProducer(raw_producer(kafka_settings, **overrides))


# kafka-python 3 runs its network I/O on a Python thread, which takes the GIL from the polling thread at every
# switch interval (5 ms by default). At 50 ms raw consume measured 35,681-40,471 records/s here, against
# 16,459-25,549 at 5 ms; the I/O thread still gets the GIL within 50 ms.
SWITCH_INTERVAL_S = 0.05


def _longer_switch_interval() -> None:
    sys.setswitchinterval(max(sys.getswitchinterval(), SWITCH_INTERVAL_S))


@translated
def consumer(
    kafka_settings: KafkaSettings,
    group_id: str | None,
    *,
    max_poll_records: int,
    max_poll_interval_ms: int | None,
) -> KafkaPythonConsumer:
    _longer_switch_interval()
    overrides: dict[str, Any] = {"max_poll_records": max_poll_records}
    if max_poll_interval_ms is not None:
        overrides["max_poll_interval_ms"] = max_poll_interval_ms
    return KafkaPythonConsumer(raw_consumer(kafka_settings, group_id, **overrides))


@translated
def admin(kafka_settings: KafkaSettings, *, request_timeout_ms: int | None) -> KafkaPythonAdmin:
    overrides = {} if request_timeout_ms is None else {"request_timeout_ms": request_timeout_ms}
    return KafkaPythonAdmin(raw_admin(kafka_settings, **overrides))


def answers_metadata(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at ``bootstrap`` (PLAINTEXT) answers a metadata request with at least one broker."""
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="retrain-readiness",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(client.describe_cluster().get("brokers"))
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        client.close()


def raw_consume_seconds(kafka_settings: KafkaSettings, topics: list[str], total: int) -> float:
    """The benchmarks' baseline: kafka-python alone polling ``total`` records of ``topics`` (clock from the first).

    Under the same switch interval as the services' clients, so that the ratios compare like with like.
    """
    import time

    _longer_switch_interval()
    import uuid

    consumer = raw_consumer(kafka_settings, f"raw-{uuid.uuid4().hex[:8]}", *topics, max_poll_records=1_000)
    seen, size, started = 0, 0, None
    while seen < total:
        batches = consumer.poll(timeout_ms=500, max_records=1_000)
        if batches and started is None:
            started = time.perf_counter()
        for records in batches.values():
            for record in records:
                size += len(record.value)
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close(autocommit=False)
    return elapsed
