"""The consume loop every service shares: poll, handle, dead-letter, flush, then commit; stop on a signal.

What the loop drives is in :mod:`retrain.consumers.service`; how a signal stops it, in
:mod:`retrain.consumers.shutdown`.

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

import logging
import threading
import time
from collections.abc import Callable, Iterable

from retrain.consumers.service import InvalidRecord, Outputs, Service
from retrain.consumers.shutdown import SHUTDOWN_GRACE_S, stop_on_signals
from retrain.kafka import Consumer, FatalFailure, KafkaFailure, Producer, ProducerFenced, Record, TopicPartition
from retrain.producers import EventPublisher
from retrain.schemas import EventDecodeError

log = logging.getLogger(__name__)

# A fenced transactional producer is replaced this many times within the window; one more fencing means another
# live instance uses the same transactional id, and this one stops.
MAX_PRODUCER_RENEWALS = 3
PRODUCER_RENEWAL_WINDOW_S = 600.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0  # a broker back after a restart is used within 10 s, however long it was away


class ConsumeLoop:
    """Runs one service over its subscription until :meth:`stop` (or SIGTERM/SIGINT) is called."""

    def __init__(
        self,
        service: Service,
        consumer: Consumer,
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
        renew_producer: Callable[[], Producer] | None = None,
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
        self.transactional = publisher.producer.transactional
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
        # The partitions the group gave this loop, as its listener heard; a snapshot other threads may read (a
        # client's consumer belongs to the loop's thread: librdkafka's deadlocks when called from another one).
        self.assigned: frozenset[TopicPartition] = frozenset()

    def stop(self, *_: object) -> None:
        """Ask the loop to finish its batch, flush, commit and return. Safe from a signal handler."""
        self._stopping.set()

    def install_signal_handlers(self, grace_s: float | None = SHUTDOWN_GRACE_S) -> None:
        """SIGTERM and SIGINT stop the loop; ``grace_s`` later the process exits whatever it is waiting for.

        A last flush or commit can wait on Kafka for long (kafka-python's transactional calls have no timeout).
        Past the grace the service logs its threads' stacks and exits with
        :data:`~retrain.consumers.shutdown.EXIT_OVERDUE`, without that last commit: what it did not commit is read
        again by the next instance.
        """
        stop_on_signals(self.service.name, self.stop, self._stopping, grace_s)

    def run(self) -> None:
        self.subscribe()
        try:
            while not self._stopping.is_set():
                try:
                    self.run_once()
                except KafkaFailure as error:
                    try:
                        if isinstance(error, FatalFailure) and not self._renewable(error):
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

    def recover(self, error: KafkaFailure) -> None:
        """Give the batch up after a Kafka failure: abort it, and rewind to the last commit before the next one."""
        self.recoveries += 1
        if self.on_recovery is not None:
            self.on_recovery(error.name)
        log.warning(
            "%s: Kafka failed under a batch (%s); rewinding to the last commit in %.0f s",
            self.service.name,
            error,
            self._backoff_s,
        )
        renewable = self._renewable(error)
        if self.transactional and (self._in_transaction or renewable):
            if renewable or self.publisher.producer.has_fatal_error():
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
        except FatalFailure as abort_error:
            if not self._renewable(abort_error):
                raise
            self._schedule_renewal(abort_error)
        except KafkaFailure as abort_error:  # tried again with the next failure; the broker fences it meanwhile
            log.warning("%s: aborting the transaction failed too: %s", self.service.name, abort_error)
        else:
            self._in_transaction = False

    def _renewable(self, error: BaseException) -> bool:
        """A fenced transactional producer can be replaced (its transaction is lost, not its work)."""
        return self.transactional and self.renew_producer is not None and isinstance(error, ProducerFenced)

    def _schedule_renewal(self, error: KafkaFailure) -> None:
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
            self.publisher.producer.close(timeout_s=1)
        except Exception as error:  # a fenced producer may complain on its way out; it is dropped either way
            log.debug("%s: closing the fenced producer: %s", self.service.name, error)
        self.publisher.producer = self.renew_producer()  # init_transactions: a KafkaFailure here is retried
        self._renew_pending = False
        log.warning("%s: a new transactional producer has replaced the fenced one", self.service.name)

    def _rewind(self) -> None:
        """Back to the committed offsets, with the service's state of those partitions dropped (it restores it).

        The same as a restart, without one: what was handled after the last commit is handled again.
        """
        assigned = sorted(self.consumer.assignment())
        commits = self._last_commits(assigned)  # a KafkaFailure here: the rewind waits for the next try
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
                self.consumer.seek_to_beginning([partition])  # nothing committed yet: read from the earliest
            else:
                self.consumer.seek(partition, offset)

    def subscribe(self) -> None:
        """Subscribe, with this loop as the rebalance listener, once the client knows every topic's partitions.

        A group leader assigns with the metadata it has at that moment: a topic it does not know yet gets no
        partitions (kafka-python 3 did not always rebalance when the metadata arrived). Joining only once the
        metadata is there keeps that race from starting.
        """
        self.await_topics()
        if not self._stopping.is_set():
            self.consumer.subscribe(self.topics, self)

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
        records = self.consumer.poll(self.poll_timeout_ms / 1000, self.max_records)
        for record in records:
            self._handle(record)
        handled = len(records)
        self.service.after_batch(self.outputs)
        if handled or self.outputs.sent:
            self._flush_and_commit()
        if self.on_lag is not None and time.monotonic() >= self._lag_due:
            self._report_lag()
        return handled

    def _report_lag(self) -> None:
        self._lag_due = time.monotonic() + self.lag_interval_s
        # The end the last fetch saw: no request to the broker.
        for partition in self.consumer.assignment():
            end = self.consumer.highwater(partition)
            if end is not None:
                self.on_lag(partition, max(0, end - self.consumer.position(partition)))

    def _handle(self, record: Record) -> None:
        if self.on_record is not None:
            self.on_record(record)
        try:
            self.service.handle(record, self.outputs)
        except KafkaFailure:
            raise  # Kafka failing, not the record: the batch is given up and read again
        except EventDecodeError as error:
            self.outputs.dead_letter_record(record, error, error.reason)
        except InvalidRecord as error:
            self.outputs.dead_letter_record(record, error, error.reason)
        except Exception as error:  # a bug must not stop the stream: keep the record and the reason
            log.exception("%s failed on %s[%d]@%d", self.service.name, record.topic, record.partition, record.offset)
            self.outputs.dead_letter_record(record, error, "processing_error")

    def _flush_and_commit(self) -> None:
        offsets: dict[TopicPartition, int] = {}
        for partition in self.consumer.assignment():
            offset = self.service.committable(partition, self.consumer.position(partition))
            if self._committed.get(partition) != offset:
                offsets[partition] = offset
        prepare = getattr(self.service, "prepare_commit", None)
        if prepare is None or not self.transactional:
            # At-least-once: the outputs are written before the snapshots that say they were made (a snapshot
            # ahead of its outputs would make a restart skip joins whose examples were never written).
            self.publisher.flush()
        if prepare is not None:
            prepare(offsets)  # e.g. the detector's state snapshots
            self.publisher.flush()  # under exactly_once, outputs and snapshots at once: the transaction orders them
        self.outputs.sent = 0
        written = getattr(self.service, "outputs_written", None)
        if self.transactional:
            if offsets:
                self.publisher.producer.send_offsets_to_transaction(offsets, self.consumer)
            self.publisher.producer.commit_transaction()  # outputs, snapshots and offsets at once
            self._in_transaction = False
            if written is not None:
                written()  # e.g. local state stores: only what Kafka committed
        elif written is not None:
            written()  # before the commit: a restart resumes from the store, never past it
        if not self.transactional and offsets:
            try:
                self.consumer.commit(offsets)
            except KafkaFailure as error:  # the broker away, a rebalance: the outputs are safe, the commit waits
                log.warning(
                    "%s: committing offsets failed (%s); they go with the next commit",
                    self.service.name,
                    error,
                )
                return
        if offsets:
            self._committed.update(offsets)
            committed = getattr(self.service, "committed", None)
            if committed is not None:
                committed(offsets)

    def _finish(self) -> None:
        try:
            if self._rewind_pending or self._abandoned:
                # A batch was given up (stopped during its backoff, or a fatal error): the consumer's positions are
                # past records whose outputs are not safe, so nothing is committed; a restart reads them again.
                if self.transactional and self._in_transaction and not self._abandoned:  # fenced: nothing to abort
                    try:
                        self.publisher.producer.abort_transaction()
                    except KafkaFailure as error:
                        log.warning("%s: aborting the transaction at exit failed: %s", self.service.name, error)
                return
            self._begin()
            self.service.after_batch(self.outputs)
            self._flush_and_commit()
        finally:
            self.consumer.close()
            self.publisher.producer.close()
            self.service.close()

    # -- rebalance listener (called inside consumer.poll, on this loop's thread) ----------------------------------

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Nothing to flush or commit: every batch was flushed and committed before the poll that rebalances.
        if revoked:
            self.assigned = self.assigned - set(revoked)
            self.service.partitions_revoked(revoked)
            for partition in revoked:
                self._committed.pop(partition, None)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("%s assigned %s", self.service.name, sorted(assigned))
        self.assigned = self.assigned | set(assigned)
        self.service.partitions_assigned(self.consumer, assigned)
