"""The consume loop every service shares: poll, handle, dead-letter, flush, then commit; stop on a signal.

At-least-once: a batch's outputs are flushed (acknowledged by the broker) before its offsets are committed, and
a service may hold its commit back further (the detector commits no further than its oldest pending join).
A record the service cannot use never stops the loop: it goes to the dead-letter topic with the reason.

Exactly-once (a transactional producer, ``RETRAIN_KAFKA_PROCESSING_GUARANTEE=exactly_once``): each batch's
outputs, the service's snapshots and the consumed offsets are one Kafka transaction; consumers downstream read
committed records only.

When Kafka fails under a batch (the broker away, a write not acknowledged, a transaction that cannot commit), the
loop recovers in-process, the way a restart would: it aborts the open transaction, drops the service's state of
its partitions (which the service restores from its snapshots on the next read), seeks back to the last committed
offsets, waits (1 s, doubling to 10 s) and carries on. Under at-least-once some records are then handled twice;
under exactly-once nothing of the failed batch was ever visible. Only errors that no retry can cure (fenced by
another instance with the same transactional id, not authorised) stop the service.

"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    AuthorizationError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    UnsupportedVersionError,
)
from kafka.structs import OffsetAndMetadata

from consumers.decoding import dead_letter_for
from producers import EventPublisher
from schemas import DeadLetter, Event, EventDecodeError

log = logging.getLogger(__name__)

# Errors that retrying cannot cure: the service stops (with a non-zero exit) and says why.
FATAL_ERRORS = (
    ProducerFencedError,
    InvalidProducerEpochError,
    AuthorizationError,
    SaslAuthenticationFailedError,
    IllegalStateError,
    KafkaConfigurationError,
    UnsupportedVersionError,
)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0  # a broker back after a restart is used within 10 s, however long it was away


class InvalidRecord(ValueError):
    """A record that decodes but cannot be used (e.g. a regression label that is not a number)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Outputs:
    """What a service emits while handling a batch; sent at once, flushed before the commit."""

    def __init__(self, publisher: EventPublisher, service: str, on_dead_letter=None) -> None:
        self.publisher = publisher
        self.service = service
        self.on_dead_letter = on_dead_letter
        self.sent = 0

    def emit(self, event: Event) -> None:
        self.publisher.publish(event)
        self.sent += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        self.emit(letter)
        if self.on_dead_letter is not None:
            self.on_dead_letter(letter.error_reason)

    def dead_letter_record(self, record: ConsumerRecord, error: Exception, reason: str) -> None:
        self.dead_letter(dead_letter_for(record, error, self.service, reason))


class Service(Protocol):
    name: str

    def handle(self, record: ConsumerRecord, out: Outputs) -> None: ...

    def after_batch(self, out: Outputs) -> None: ...

    def committable(self, partition: TopicPartition, position: int) -> int:
        """The offset that is safe to commit for ``partition`` given the consumer's ``position``."""
        ...

    def partitions_revoked(self, partitions: Iterable[TopicPartition]) -> None: ...

    def partitions_assigned(self, consumer: KafkaConsumer, partitions: Iterable[TopicPartition]) -> None: ...

    def close(self) -> None:
        """Release what the service owns besides the loop's consumer and producer."""
        ...


class ConsumeLoop(ConsumerRebalanceListener):
    """Runs one service over its subscription until :meth:`stop` (or SIGTERM/SIGINT) is called."""

    def __init__(
        self,
        service: Service,
        consumer: KafkaConsumer,
        publisher: EventPublisher,
        topics: list[str],
        *,
        poll_timeout_ms: int = 200,
        max_records: int = 1_000,
        on_dead_letter=None,
        on_record=None,
        on_lag=None,
        on_recovery=None,
        lag_interval_s: float = 5.0,
    ) -> None:
        self.service = service
        self.consumer = consumer
        self.publisher = publisher
        self.topics = topics
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.on_record = on_record
        self.on_lag = on_lag  # called with (partition, records behind the end) every lag_interval_s
        self.on_recovery = on_recovery  # called with the error's class name each time a batch is given up
        self.lag_interval_s = lag_interval_s
        self._lag_due = 0.0
        self.outputs = Outputs(publisher, service.name, on_dead_letter)
        self._stopping = threading.Event()
        self._committed: dict[TopicPartition, int] = {}
        self.transactional = bool(getattr(publisher.producer, "config", {}).get("transactional_id"))
        self._in_transaction = False
        self._rewind_pending = False
        self._abandoned = False
        self._backoff_s = FIRST_BACKOFF_S
        self.recoveries = 0

    def stop(self, *_: object) -> None:
        """Ask the loop to finish its batch, flush, commit and return. Safe from a signal handler."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        self.subscribe()
        try:
            while not self._stopping.is_set():
                try:
                    self.run_once()
                except FATAL_ERRORS:
                    self._abandoned = True  # what this batch did is not safe: nothing more is committed
                    raise
                except KafkaError as error:
                    try:
                        self.recover(error)
                    except BaseException:
                        self._abandoned = True  # not even given up cleanly (e.g. fenced): nothing more is committed
                        raise
                else:
                    self._backoff_s = FIRST_BACKOFF_S
        finally:
            self._finish()

    def recover(self, error: KafkaError) -> None:
        """Give the batch up after a Kafka failure: abort it, and rewind to the last commit before the next one."""
        self.recoveries += 1
        if self.on_recovery is not None:
            self.on_recovery(type(error).__name__)
        log.warning(
            "%s: Kafka failed under a batch (%s); rewinding to the last commit in %.0f s",
            self.service.name,
            error,  # kafka-python's errors print as "ClassName: message" (or the class name alone)
            self._backoff_s,
        )
        if self.transactional and self._in_transaction:
            manager = getattr(self.publisher.producer, "_transaction_manager", None)
            if manager is not None and manager.has_fatal_error():
                raise error
            try:
                self.publisher.producer.abort_transaction()
            except FATAL_ERRORS:
                raise
            except KafkaError as abort_error:  # tried again with the next failure; the broker fences it meanwhile
                log.warning("%s: aborting the transaction failed too: %s", self.service.name, abort_error)
            else:
                self._in_transaction = False
        self.publisher.forget()
        self.outputs.sent = 0
        self._rewind_pending = True
        self._stopping.wait(self._backoff_s)
        self._backoff_s = min(MAX_BACKOFF_S, self._backoff_s * 2)

    def _rewind(self) -> None:
        """Back to the committed offsets, with the service's state of those partitions dropped (it restores it).

        The same as a restart, without one: what was handled after the last commit is handled again.
        """
        assigned = sorted(self.consumer.assignment())
        committed = {}
        for partition in assigned:
            offset = self._committed.get(partition)
            if offset is None:
                offset = self.consumer.committed(partition)  # a KafkaError here: the rewind waits for the next try
            committed[partition] = offset
        self.service.partitions_revoked(assigned)
        for partition, offset in committed.items():
            if offset is None:
                self.consumer.seek_to_beginning(partition)  # nothing committed yet: auto_offset_reset=earliest
            else:
                self.consumer.seek(partition, offset)
        self.service.partitions_assigned(self.consumer, assigned)
        self._rewind_pending = False
        log.info("%s: rewound %d partitions to their committed offsets", self.service.name, len(assigned))

    def subscribe(self) -> None:
        """Subscribe, with this loop as the rebalance listener.

        kafka-python 3's group leader can assign before it knows the topics' partitions and hand out nothing; it
        rebalances at its next metadata refresh, which ``retrain.clients.make_consumer`` makes every few seconds.
        """
        self.consumer.subscribe(self.topics, listener=self)

    def _begin(self) -> None:
        if self.transactional and not self._in_transaction:
            self.publisher.producer.begin_transaction()
            self._in_transaction = True

    def run_once(self) -> int:
        if self._rewind_pending:
            self._rewind()
        self._begin()
        batches = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        handled = 0
        for records in batches.values():
            for record in records:
                self._handle(record)
                handled += 1
        self.service.after_batch(self.outputs)
        if handled or self.outputs.sent:
            self._flush_and_commit()
        if self.on_lag is not None and time.monotonic() >= self._lag_due:
            self._report_lag()
        return handled

    def _report_lag(self) -> None:
        self._lag_due = time.monotonic() + self.lag_interval_s
        # The high watermark the last fetch response carried: no request to the broker (an end_offsets call
        # from this thread while fetches are in flight stalled consumption in kafka-python 3).
        for partition in self.consumer.assignment():
            end = self.consumer.highwater(partition)
            if end is not None:
                self.on_lag(partition, max(0, end - self.consumer.position(partition)))

    def _handle(self, record: ConsumerRecord) -> None:
        if self.on_record is not None:
            self.on_record(record)
        try:
            self.service.handle(record, self.outputs)
        except KafkaError:
            raise  # Kafka failing, not the record: the batch is given up and read again
        except EventDecodeError as error:
            self.outputs.dead_letter_record(record, error, error.reason)
        except InvalidRecord as error:
            self.outputs.dead_letter_record(record, error, error.reason)
        except Exception as error:  # a bug must not stop the stream: keep the record and the reason
            log.exception("%s failed on %s[%d]@%d", self.service.name, record.topic, record.partition, record.offset)
            self.outputs.dead_letter_record(record, error, "processing_error")

    def _flush_and_commit(self) -> None:
        offsets = {}
        for partition in self.consumer.assignment():
            offset = self.service.committable(partition, self.consumer.position(partition))
            if self._committed.get(partition) != offset:
                offsets[partition] = OffsetAndMetadata(offset, "", -1)
        plain = {partition: meta.offset for partition, meta in offsets.items()}
        prepare = getattr(self.service, "prepare_commit", None)
        if prepare is None or not self.transactional:
            # At-least-once: the outputs are written before the snapshots that say they were made (a snapshot
            # ahead of its outputs would make a restart skip joins whose examples were never written).
            self.publisher.flush()
        if prepare is not None:
            prepare(plain)  # e.g. the detector's state snapshots
            self.publisher.flush()  # under exactly_once, outputs and snapshots at once: the transaction orders them
        self.outputs.sent = 0
        if self.transactional:
            if offsets:
                self.publisher.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self.publisher.producer.commit_transaction()  # outputs, snapshots and offsets at once
            self._in_transaction = False
        elif offsets:
            try:
                self.consumer.commit(offsets)
            except KafkaError as error:  # the broker away, a rebalance: the outputs are safe, the commit waits
                log.warning(
                    "%s: committing offsets failed (%s); they go with the next commit",
                    self.service.name,
                    error,
                )
                return
        if offsets:
            self._committed.update(plain)
            committed = getattr(self.service, "committed", None)
            if committed is not None:
                committed(plain)

    def _finish(self) -> None:
        try:
            if self._rewind_pending or self._abandoned:
                # A batch was given up (stopped during its backoff, or a fatal error): the consumer's positions are
                # past records whose outputs are not safe, so nothing is committed; a restart reads them again.
                if self.transactional and self._in_transaction and not self._abandoned:  # fenced: nothing to abort
                    try:
                        self.publisher.producer.abort_transaction()
                    except KafkaError as error:
                        log.warning("%s: aborting the transaction at exit failed: %s", self.service.name, error)
                return
            self._begin()
            self.service.after_batch(self.outputs)
            self._flush_and_commit()
        finally:
            self.consumer.close(autocommit=False)
            self.publisher.producer.close()
            self.service.close()

    # -- rebalance listener -------------------------------------------------------------------------------

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # kafka-python 3 calls this on its IO thread, where nothing may block (no flush, no commit). Nothing needs
        # to: every batch was flushed and committed before the poll that rebalances.
        if revoked:
            self.service.partitions_revoked(revoked)
            for partition in revoked:
                self._committed.pop(partition, None)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Also on the IO thread: a service may only note the assignment here (and pause partitions), and do any
        # blocking work in its after_batch.
        log.info("%s assigned %s", self.service.name, sorted(assigned))
        self.service.partitions_assigned(self.consumer, assigned)
