"""The seam's producer over a kafka-python producer, partitioning keyed records itself (murmur2, cached)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from retrain.kafka.errors import PublishFailed
from retrain.kafka.kafka_python.failures import _as_failure, translated
from retrain.kafka.kafka_python.partitions import _kp
from retrain.kafka.types import Consumer, Headers, OnDelivery, TopicPartition

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
