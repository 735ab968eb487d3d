"""The consume loop every service shares: poll, handle, dead-letter, flush, then commit; stop on a signal.

At-least-once: a batch's outputs are flushed (acknowledged by the broker) before its offsets are committed, and
a service may hold its commit back further (the detector commits no further than its oldest pending join).
A record the service cannot use never stops the loop: it goes to the dead-letter topic with the reason.

Exactly-once (a transactional producer, ``RETRAIN_KAFKA_PROCESSING_GUARANTEE=exactly_once``): each batch's
outputs, the service's snapshots and the consumed offsets are one Kafka transaction; consumers downstream read
committed records only. A transaction that cannot be committed stops the service: restarted, it carries on from
the last committed transaction, and nothing of the failed one is ever read.
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
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.decoding import dead_letter_for
from producers import EventPublisher
from schemas import DeadLetter, Event, EventDecodeError

log = logging.getLogger(__name__)


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
        self.lag_interval_s = lag_interval_s
        self._lag_due = 0.0
        self.outputs = Outputs(publisher, service.name, on_dead_letter)
        self._stopping = threading.Event()
        self._committed: dict[TopicPartition, int] = {}
        self.transactional = bool(getattr(publisher.producer, "config", {}).get("transactional_id"))
        self._in_transaction = False

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
                self.run_once()
        finally:
            self._finish()

    def subscribe(self) -> None:
        """Subscribe, with the topics' metadata fetched first.

        Without it, kafka-python 3's group leader can assign before it knows the topics' partitions, hand out
        nothing, and not rebalance again until its next metadata refresh (minutes later).
        """
        self.consumer.subscribe(self.topics, listener=self)

    def _begin(self) -> None:
        if self.transactional and not self._in_transaction:
            self.publisher.producer.begin_transaction()
            self._in_transaction = True

    def run_once(self) -> int:
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
        if prepare is not None:
            prepare(plain)  # e.g. the detector's state snapshots, sent with the batch's outputs
        # Outputs and snapshots are flushed together, as late as possible: a crash before the commit then finds
        # either both or (often) neither, which keeps the joins made twice after a restart few.
        self.publisher.flush()
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
                    "%s: committing offsets failed (%s: %s); they go with the next commit",
                    self.service.name,
                    type(error).__name__,
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
