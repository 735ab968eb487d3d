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
under exactly-once nothing of the failed batch was ever visible. A transactional producer the broker fenced
(its transaction outlived ``transaction.timeout.ms``, e.g. across a long outage) is replaced by a new one under
the same transactional id, at most :data:`MAX_PRODUCER_RENEWALS` times in :data:`PRODUCER_RENEWAL_WINDOW_S`.
Only errors that no retry can cure (fenced again and again: another live instance with the same transactional id;
not authorised) stop the service.

"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
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
SHUTDOWN_GRACE_S = 9.0  # SIGTERM to exit: the promise is 10 s
EXIT_OVERDUE = 70  # the exit code of a service that did not finish shutting down in time
# A fenced transactional producer is replaced this many times within the window; one more fencing means another
# live instance uses the same transactional id, and this one stops.
MAX_PRODUCER_RENEWALS = 3
PRODUCER_RENEWAL_WINDOW_S = 600.0
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
        renew_producer: Callable[[], KafkaProducer] | None = None,
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
        # Makes (and initialises) a transactional producer with this service's transactional id: a fenced one
        # is replaced with it. None: fenced is fatal.
        self.renew_producer = renew_producer
        self._renew_pending = False
        self._renewals: list[float] = []  # when the producer was last replaced (monotonic), within the window
        # Partitions a rebalance took away and gave straight back: kafka-python 3 keeps their fetch positions
        # (its eager protocol only notifies the revocation), but the service dropped their state on the revocation,
        # so they are read again from their committed offsets, as a new owner would. Set on the IO thread.
        self._revoked_last: set[TopicPartition] = set()
        self._reseek: set[TopicPartition] = set()
        self._reseek_lock = threading.Lock()

    def stop(self, *_: object) -> None:
        """Ask the loop to finish its batch, flush, commit and return. Safe from a signal handler."""
        self._stopping.set()

    def install_signal_handlers(self, grace_s: float | None = SHUTDOWN_GRACE_S) -> None:
        """SIGTERM and SIGINT stop the loop; ``grace_s`` later the process exits whatever it is waiting for.

        A last flush or commit can wait on Kafka without end (kafka-python's transactional calls have no
        timeout). Past the grace the service logs its threads' stacks and exits with :data:`EXIT_OVERDUE`,
        without that last commit: what it did not commit is read again by the next instance.
        """

        def on_signal(signum: int, _frame: object) -> None:
            if grace_s is not None and not self._stopping.is_set():
                overdue = threading.Timer(grace_s, self._overdue, args=(grace_s,))
                overdue.daemon = True
                overdue.start()
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _overdue(self, grace_s: float) -> None:
        log.error(
            "%s: still shutting down %g s after the signal; exiting without the last commit (the records after "
            "it are read again); its threads were:",
            self.service.name,
            grace_s,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_OVERDUE)

    def run(self) -> None:
        self.subscribe()
        try:
            while not self._stopping.is_set():
                try:
                    self.run_once()
                except KafkaError as error:
                    try:
                        if isinstance(error, FATAL_ERRORS) and not self._renewable(error):
                            raise
                        self.recover(error)
                    except BaseException:
                        # What this batch did is not safe, and it was not even given up cleanly (e.g. fenced):
                        # nothing more is committed.
                        self._abandoned = True
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
        renewable = self._renewable(error)
        if self.transactional and (self._in_transaction or renewable):
            manager = getattr(self.publisher.producer, "_transaction_manager", None)
            if renewable or (manager is not None and manager.has_fatal_error()):
                self._schedule_renewal(error)  # raises the error when no renewal is allowed
            else:
                self._abort_given_up()
        self.publisher.forget()
        self.outputs.sent = 0
        self._rewind_pending = True
        self._stopping.wait(self._backoff_s)
        self._backoff_s = min(MAX_BACKOFF_S, self._backoff_s * 2)

    def _abort_given_up(self) -> None:
        try:
            self.publisher.producer.abort_transaction()
        except FATAL_ERRORS as abort_error:
            if not self._renewable(abort_error):
                raise
            self._schedule_renewal(abort_error)
        except KafkaError as abort_error:  # tried again with the next failure; the broker fences it meanwhile
            log.warning("%s: aborting the transaction failed too: %s", self.service.name, abort_error)
        else:
            self._in_transaction = False

    def _renewable(self, error: BaseException) -> bool:
        """A fenced transactional producer can be replaced (its transaction is lost, not its work)."""
        return (
            self.transactional
            and self.renew_producer is not None
            and isinstance(error, ProducerFencedError | InvalidProducerEpochError)
        )

    def _schedule_renewal(self, error: KafkaError) -> None:
        """Replace the producer before the next batch, unless it was replaced too often lately (then: fatal)."""
        if self.renew_producer is None:
            raise error
        now = time.monotonic()
        self._renewals = [at for at in self._renewals if now - at < PRODUCER_RENEWAL_WINDOW_S]
        if len(self._renewals) >= MAX_PRODUCER_RENEWALS:
            log.error(
                "%s: the transactional producer was fenced %d times in %.0f s; another live instance must be using "
                "the same transactional id (RETRAIN_KAFKA_TRANSACTIONAL_ID): stopping",
                self.service.name,
                len(self._renewals) + 1,
                PRODUCER_RENEWAL_WINDOW_S,
            )
            raise error
        self._renewals.append(now)
        self._renew_pending = True
        self._in_transaction = False  # the broker aborts it, or the new producer's init_transactions does

    def _renew(self) -> None:
        """Close the fenced producer and put a new one (same transactional id, initialised) in its place."""
        assert self.renew_producer is not None
        try:
            self.publisher.producer.close(timeout=1)
        except Exception as error:  # a fenced producer may complain on its way out; it is dropped either way
            log.debug("%s: closing the fenced producer: %s", self.service.name, error)
        self.publisher.producer = self.renew_producer()  # init_transactions: a KafkaError here is retried
        self._renew_pending = False
        log.warning("%s: a new transactional producer has replaced the fenced one", self.service.name)

    def _rewind(self) -> None:
        """Back to the committed offsets, with the service's state of those partitions dropped (it restores it).

        The same as a restart, without one: what was handled after the last commit is handled again.
        """
        assigned = sorted(self.consumer.assignment())
        commits = self._last_commits(assigned)  # a KafkaError here: the rewind waits for the next try
        self.service.partitions_revoked(assigned)
        self._seek_to(commits)
        self.service.partitions_assigned(self.consumer, assigned)
        self._rewind_pending = False
        log.info("%s: rewound %d partitions to their committed offsets", self.service.name, len(assigned))

    def _last_commits(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Each partition's last committed offset: the loop's own record of it, else the group's (a request)."""
        return {p: self._committed[p] if p in self._committed else self.consumer.committed(p) for p in partitions}

    def _seek_to(self, commits: dict[TopicPartition, int | None]) -> None:
        for partition, offset in commits.items():
            if offset is None:
                self.consumer.seek_to_beginning(partition)  # nothing committed yet: auto_offset_reset=earliest
            else:
                self.consumer.seek(partition, offset)

    def subscribe(self) -> None:
        """Subscribe, with this loop as the rebalance listener, once the consumer knows every topic's partitions.

        kafka-python 3's group leader assigns with the metadata it has at that moment: a topic it does not know yet
        gets no partitions ("No partition metadata for topic" in its log), and the rebalance that should follow
        when the metadata arrives did not always come (measured: a detector left with nothing to read for 120 s
        in 1 of 15 broker-restart runs). Joining only once the metadata is there keeps the race from starting;
        ``retrain.clients.make_consumer``'s frequent metadata refresh remains the fallback.
        """
        self.await_topics()
        if not self._stopping.is_set():
            self.consumer.subscribe(self.topics, listener=self)
            # A metadata update after the subscription, before the first join: kafka-python's coordinator notes
            # the subscribed topics' partitions only from updates, and one that comes after its first assignment
            # makes it rebalance again (measured: every service start had that second rebalance, 0.4 s in,
            # after its first batch). topics() always asks the broker.
            self.consumer.topics()

    def await_topics(self, warn_after_s: float = 10.0) -> None:
        """Wait (until stopped) for the consumer's metadata to hold the partitions of every subscribed topic."""
        started = time.monotonic()
        missing = list(self.topics)
        warned = False
        while not self._stopping.is_set():
            missing = [topic for topic in missing if not self.consumer.partitions_for_topic(topic)]
            if not missing:
                return
            if not warned and time.monotonic() - started >= warn_after_s:
                log.warning(
                    "%s: waiting for topics %s to exist (`retrain topics create` makes them)",
                    self.service.name,
                    ", ".join(missing),
                )
                warned = True
            self._stopping.wait(0.5)

    def _begin(self) -> None:
        if self.transactional and not self._in_transaction:
            self.publisher.producer.begin_transaction()
            self._in_transaction = True

    def run_once(self) -> int:
        if self._renew_pending:
            self._renew()
        if self._rewind_pending:
            self._rewind()
        self._begin()
        batches = self._read_again_if_kept(
            self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        )
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

    def _read_again_if_kept(self, batches: dict) -> dict:
        """Seek the partitions a rebalance gave straight back to their committed offsets; drop what was fetched.

        Without this, the records between the last commit and the kept position, which the service dropped with
        its state on the revocation (the detector's pending labels, say), would never be read again: measured, a
        detector that made 400 of 600 joins and then waited for ever on labels it had read before a start-up
        rebalance.
        """
        with self._reseek_lock:
            kept, self._reseek = self._reseek, set()
        if not kept:  # every batch but those right after a rebalance: no request, no lookup
            return batches
        kept &= self.consumer.assignment()
        if kept:
            self._seek_to(self._last_commits(sorted(kept)))  # a KafkaError here: recover() rewinds everything
            log.info(
                "%s: %d partitions kept across a rebalance: read again from the commits", self.service.name, len(kept)
            )
        return {partition: records for partition, records in batches.items() if partition not in kept}

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
        with self._reseek_lock:
            self._revoked_last = set(revoked)
        if revoked:
            self.service.partitions_revoked(revoked)
            for partition in revoked:
                self._committed.pop(partition, None)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Also on the IO thread: a service may only note the assignment here (and pause partitions), and do any
        # blocking work in its after_batch.
        log.info("%s assigned %s", self.service.name, sorted(assigned))
        with self._reseek_lock:
            self._reseek |= set(assigned) & self._revoked_last  # kept: their fetch positions were not reset
            self._revoked_last = set()
        self.service.partitions_assigned(self.consumer, assigned)
