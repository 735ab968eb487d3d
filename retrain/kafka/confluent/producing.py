"""The seam's producer over a librdkafka producer, transactional when given an id."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, Message

from retrain.kafka.confluent.configuration import _logging_callbacks, log
from retrain.kafka.confluent.failures import _FENCED, _kafka_cause, failure
from retrain.kafka.confluent.records import _ck
from retrain.kafka.errors import FatalFailure, KafkaFailure, ProducerFenced, PublishFailed, RetriableFailure
from retrain.kafka.types import Consumer, Headers, OnDelivery, TopicPartition

T = TypeVar("T")

# Bounds for the transactional calls and the broker look-ups that take a timeout (librdkafka's default: forever).
TRANSACTION_TIMEOUT_S = 60.0
# How much longer than its own timeout send_offsets_to_transaction may take before the adapter stops waiting for it
# (librdkafka can miss that timeout: issue #5456).
OVERDUE_GRACE_S = 5.0


class _FatalNoted:
    fatal: KafkaFailure | None = None

    def note_fatal(self, error: KafkaFailure) -> None:
        if self.fatal is None:
            self.fatal = error


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
