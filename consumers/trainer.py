"""The trainer service: windowed buffers from ``labeled-examples``, validated retraining on ``retrain-events``.

Kafka is the store: on every assignment of a ``labeled-examples`` partition the trainer seeks back to the
first record younger than the buffer's age bound and reads forward, so after a restart (or a rebalance) each
model's buffer holds the same examples as before — the ones still within the bounds. Retrain events wait until
the buffers have caught up with the end of their partitions, are coalesced per model, and are idempotent: an
event whose version is already in the registry is answered again from the registry, not refitted.

Fits run in worker processes (:class:`FitPool`), one per model at a time, while the loop keeps polling: an event
is answered (its model-updated event published) in the batch that collects its fit, and its offset is committed
only then, so a fit is never inside a Kafka transaction and a crash mid-fit repeats it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry

from retrain.consumers.admission import AdmittedModels
from retrain.consumers.answers import Answers, stamp
from retrain.consumers.decoding import decode_record
from retrain.consumers.fit_pool import FitPool, JobResult
from retrain.consumers.fitting import Fit
from retrain.consumers.metrics import TrainerMetrics
from retrain.consumers.service import Outputs
from retrain.decisions.admission import ModelAdmission
from retrain.decisions.drift import Task, task_of
from retrain.decisions.training import (
    EstimatorFactory,
    ExampleBuffer,
    FittedModel,
    TrainingConfig,
    plan_fit,
    ready_to_fit,
    train_challenger,
    window_bounds,
)
from retrain.kafka import Consumer, Record, TopicPartition
from retrain.registry import ArtifactVerificationError, ModelVersionInfo, Registry, RegistryError
from retrain.schemas import LabeledExample, ModelUpdatedEvent, RetrainEvent, UpdateOutcome
from retrain.schemas.types import utc_now
from retrain.settings import TopicSettings

log = logging.getLogger(__name__)


class TrainerService:
    name = "trainer"

    def __init__(
        self,
        topics: TopicSettings,
        registry: Registry,
        config: TrainingConfig,
        factory_for: Callable[[str, Task], EstimatorFactory],
        *,
        buffer_max_examples: int,
        buffer_max_age_s: float,
        cold_start_min: int,
        regression_models: frozenset[str] = frozenset(),
        metrics_registry: CollectorRegistry | None = None,
        fit_threads: int | None = 1,
        fit_workers: int = 1,
        fit_timeout_s: float = 3600.0,
        admission: ModelAdmission | None = None,
    ) -> None:
        self.topics = topics
        self.registry = registry
        self.config = config
        self.factory_for = factory_for
        self.buffer_max_examples = buffer_max_examples
        self.buffer_max_age_s = buffer_max_age_s
        self.cold_start_min = cold_start_min
        self.regression_models = regression_models
        # One OpenMP/BLAS thread per fit by default: a fit's threads spin against the consumer's own.
        self.fits = FitPool(fit_workers, threads=fit_threads, timeout_s=fit_timeout_s)
        self.metrics = TrainerMetrics(metrics_registry or CollectorRegistry())
        self.answers = Answers(registry, config, self.metrics)  # registers challengers, builds the answers
        # The models this instance takes on: every model in the registry is known (a restart keeps them all).
        self.admission = AdmittedModels(admission if admission is not None else ModelAdmission(), self.metrics)
        for model_id in registry.models():
            self.admission.known(model_id)
        self.buffers: dict[str, ExampleBuffer] = {}
        self.pending: dict[str, RetrainEvent] = {}
        # (partition, offset) of the oldest unanswered retrain event of each pending model: the commit limit.
        self._pending_from: dict[str, tuple[int, int]] = {}
        self.fitting: dict[str, Fit] = {}  # by the event id the fit answers
        self.consumer: Consumer | None = None  # set by the loop's owner, for catch-up checks
        # Newly assigned labeled-examples partitions, paused until after_batch seeks them back.
        self._to_rewind: set[TopicPartition] = set()
        self._catch_up_to: dict[TopicPartition, int] | None = None  # labeled-examples ends to read before a fit
        self._buffered_changed: set[str] = set()

    # -- the Service protocol -----------------------------------------------------------------------------

    def handle(self, record: Record, out: Outputs) -> None:
        self.metrics.records_consumed.labels(self.name, record.topic).inc()
        if record.topic == self.topics.labeled_examples:
            if TopicPartition(record.topic, record.partition) in self._to_rewind:
                return  # fetched before the pause took effect: read again after the rewind
            example = decode_record(record, LabeledExample)
            self.admission.require(example.model_id)
            buffer = self.buffer(example.model_id)
            buffer.add(example)
            self._buffered_changed.add(example.model_id)
        elif record.topic == self.topics.retrain_events:
            event = decode_record(record, RetrainEvent)
            self.admission.require(event.model_id)
            event = stamp(event, received=utc_now())
            if record.timestamp >= 0:  # the record's timestamp: when the event was published
                published = record.timestamp / 1000
                self.answers.observe("delivered", published, event.trace.received)
                if event.trace.detected is not None:
                    self.answers.observe("published", event.trace.detected, published)
            log.info("%s: retrain event %s (%s) received", event.model_id, event.event_id, event.reason.value)
            if event.model_id in self.pending:
                self.metrics.coalesced.labels(event.model_id).inc()
            else:
                self._pending_from[event.model_id] = (record.partition, record.offset)
            self.pending[event.model_id] = event  # the newest event of an episode stands for all of them

    def after_batch(self, out: Outputs) -> None:
        for model_id in self._buffered_changed:  # once per batch: the gauge is not worth a lookup per record
            self.metrics.buffered.labels(model_id).set(len(self.buffer(model_id)))
        self._buffered_changed.clear()
        for result in self.fits.collect():
            self._fitted(result, out)
        if self.consumer is not None:
            self._await_paused(self.consumer)
            if self._to_rewind:
                self._rewind(self.consumer)
                return  # the rewound partitions have to be read before any retrain
        fitting = {fit.event.model_id for fit in self.fitting.values() if not fit.orphan}
        startable = [model_id for model_id in self.pending if model_id not in fitting]  # one fit per model
        if not startable or not self.fits.free() or not self._caught_up():
            return
        self._catch_up_to = None  # the next events wait for the ends as they are then
        for model_id in startable:
            event = self.pending[model_id]
            if not self._ready(event):
                continue
            if not self.fits.free():
                break
            source = self._pending_from.pop(model_id)
            del self.pending[model_id]
            update = self._guarded(event, self._start, event, source)
            if update is not None:
                out.emit(update)
        self.metrics.fits_running.set(sum(not fit.orphan for fit in self.fitting.values()))

    def committable(self, partition: TopicPartition, position: int) -> int:
        if partition.topic != self.topics.retrain_events:
            return position
        # An unanswered retrain event (pending, or being fitted) must be read again after a crash.
        sources = [*self._pending_from.values(), *(fit.source for fit in self.fitting.values() if not fit.orphan)]
        return min([position, *(offset for p, offset in sources if p == partition.partition)])

    def partitions_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        revoked = {p.partition for p in partitions if p.topic == self.topics.labeled_examples}
        self._catch_up_to = None
        if revoked:
            self.buffers.clear()  # rebuilt from Kafka on the next assignment
        events = {p.partition for p in partitions if p.topic == self.topics.retrain_events}
        for model_id, (partition, _) in list(self._pending_from.items()):
            if partition in events:  # not answered, so not committed: read again by this partition's next owner
                del self._pending_from[model_id]
                self.pending.pop(model_id, None)
        for fit in self.fitting.values():
            if fit.source[0] in events:  # its answer belongs to the next owner, unless the event comes back here
                fit.orphan = True

    # -- rebalance hook: rebuild buffers from Kafka ---------------------------------------------------------

    def close(self) -> None:
        """Stop the fit workers; buffers are rebuilt from Kafka, versions live in the registry."""
        self.fits.close()

    def partitions_assigned(self, consumer: Consumer, assigned: Iterable[TopicPartition]) -> None:
        """Pause new labeled-examples partitions; ``after_batch`` seeks them back (after the batch) and resumes them."""
        partitions = [p for p in assigned if p.topic == self.topics.labeled_examples]
        if partitions:
            consumer.pause(partitions)
            self._to_rewind.update(partitions)

    def _await_paused(self, consumer: Consumer) -> None:
        """Every paused labeled-examples partition must be awaiting its rewind; one that is not is added back."""
        stray = {p for p in consumer.paused() if p.topic == self.topics.labeled_examples} - self._to_rewind
        if stray:  # a rewind that Kafka failed under: it is tried again
            log.warning("buffers: %s paused but not awaiting a rewind; rewinding them", sorted(stray))
            self._to_rewind.update(stray)

    def _rewind(self, consumer: Consumer) -> None:
        """Seek each newly assigned partition back to the oldest record the buffers may hold, then resume."""
        pending, self._to_rewind = self._to_rewind, set()
        assignment = consumer.assignment()
        partitions = [p for p in pending if p in assignment]
        if not partitions:
            return
        # The ends are read first, as offsets (a lazily resolved "end" would skip whatever was written in between):
        # nothing before them is young enough when offsets_for_times, asked afterwards, finds nothing.
        ends = consumer.end_offsets(partitions)
        since_ms = int((time.time() - self.buffer_max_age_s) * 1000)
        found = consumer.offsets_for_times({p: since_ms for p in partitions})
        for partition in partitions:
            at = found.get(partition)
            consumer.seek(partition, ends[partition] if at is None else at)
        consumer.resume(partitions)

    # -- retraining -----------------------------------------------------------------------------------------

    def buffer(self, model_id: str) -> ExampleBuffer:
        buffer = self.buffers.get(model_id)
        if buffer is None:
            buffer = self.buffers[model_id] = ExampleBuffer(self.buffer_max_examples, self.buffer_max_age_s)
            for outcome in UpdateOutcome:  # counters start at 0, so increase() sees the first outcome
                self.metrics.outcomes.labels(model_id, outcome.value)
        return buffer

    def task(self, model_id: str) -> Task:
        return task_of(model_id, self.regression_models)

    def _guarded(
        self, event: RetrainEvent, step: Callable[..., ModelUpdatedEvent | None], *args: object
    ) -> ModelUpdatedEvent | None:
        """``step(*args)``, a step of answering ``event``; a registry that refuses (a tampered champion, a failed
        write) is a failed outcome, not a crash."""
        try:
            return step(*args)
        except (RegistryError, ArtifactVerificationError) as error:
            return self.answers.failed(event, None, "registry", f"{type(error).__name__}: {error}")

    def _start(self, event: RetrainEvent, source: tuple[int, int]) -> ModelUpdatedEvent | None:
        """Answer ``event`` from the registry if it was answered before; else start its fit (None)."""
        model_id = event.model_id
        done = self.registry.find_by_trigger(model_id, event.event_id)
        champion_info = self.registry.champion(model_id)
        if done is not None:  # delivered twice: the same answer, no second version
            decided = done.metrics.get("promote_decision") == 1.0
            if decided and (champion_info is None or champion_info.version != done.version):
                done = self.registry.promote(model_id, done.version)  # crashed between register and promote
                champion_info = self.registry.champion(model_id)
            promoted = champion_info is not None and champion_info.version == done.version
            return self.answers.answer(
                event, done, champion_info, promoted=promoted, detail="answered from the registry"
            )
        orphan = self.fitting.get(event.event_id)
        if orphan is not None:  # read again (a rewind) while its fit still runs: that fit answers it
            orphan.orphan, orphan.source = False, source
            return None
        examples = self.buffer(model_id).examples()
        plan = plan_fit(examples, event, self.config)
        window = plan.window
        log.info("%s: fitting on %d of %d buffered examples", model_id, len(window), len(examples))
        self.metrics.window_size.labels(model_id).set(len(window))
        task = self.task(model_id)
        champion = self._load(champion_info)
        factory = self.factory_for(model_id, task)
        event = stamp(event, fit_started=utc_now())
        self.answers.observe("queued", event.trace.received, event.trace.fit_started)
        self.fits.submit(
            event.event_id, train_challenger, window, factory, task, self.config, champion, plan.wider, plan.evidence
        )
        first, last = window_bounds(window)
        self.fitting[event.event_id] = Fit(event, source, champion_info, len(window), first, last)
        return None

    def _fitted(self, result: JobResult, out: Outputs) -> None:
        """A fit finished: register the challenger, promote it if it won, publish the answer."""
        fit = self.fitting.pop(result.key, None)
        if fit is None or fit.orphan:
            log.info("fit for %s finished after its partition was revoked: dropped", result.key)
            return
        self.metrics.fit_seconds.labels(fit.event.model_id).observe(result.seconds)
        fit.event = stamp(fit.event, fit_finished=utc_now())
        self.answers.observe("fit", fit.event.trace.fit_started, fit.event.trace.fit_finished)
        self.metrics.fits_running.set(sum(not f.orphan for f in self.fitting.values()))
        if result.failed:
            update = self.answers.failed(fit.event, fit, result.reason or "fit_error", result.message)
        else:
            update = self._guarded(fit.event, self.answers.register, fit, result.value)
        assert update is not None
        out.emit(update)

    def _load(self, info: ModelVersionInfo | None) -> FittedModel | None:
        if info is None:
            return None
        model = self.registry.load(info.model_id, info.version)
        return model if isinstance(model, FittedModel) else None

    def _ready(self, event: RetrainEvent) -> bool:
        has_champion = self.registry.champion(event.model_id) is not None
        return ready_to_fit(event, has_champion, len(self.buffer(event.model_id)), self.cold_start_min)

    def _caught_up(self) -> bool:
        """Have the buffers read every labeled example that existed when the pending events were seen?

        The ends are taken once, then reached: on a live stream the end moves on, and waiting for "the end" would
        wait for as long as the stream flows.
        """
        if self.consumer is None:
            return True
        partitions = [p for p in self.consumer.assignment() if p.topic == self.topics.labeled_examples]
        if not partitions:
            return True
        if self._catch_up_to is None:
            self._catch_up_to = self.consumer.end_offsets(partitions)
        return all(self.consumer.position(p) >= self._catch_up_to.get(p, 0) for p in partitions)
