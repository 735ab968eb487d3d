"""The detector service: join predictions with labels, watch each model's errors, publish retrain events.

A thin Kafka adapter around :mod:`retrain.decisions`: one :class:`LabelJoiner` per partition of the
co-partitioned predictions/labels topics, one :class:`ModelWatch` per model. Model updates are read by a
separate, group-less consumer from the beginning of ``model-updates``, so every instance knows every model's
current version whichever partitions it owns.

By default each partition's state (its pending joins, the joins it made lately, and each model's signed watch)
lives in a store on local disk backed by a compacted changelog topic (:mod:`consumers.partition_state`,
docs/state-store.md): commits follow what was read, and a restart or a rebalance carries on from the store. With
``state_store="memory"`` the join waits in RAM, commits wait for its oldest pending record, and each partition's
watches and unsettled joins are snapshotted to the compacted ``detector-state`` topic before each commit
(:mod:`retrain.decisions.checkpoint`). Either way, state is restored when a partition is first read after an
assignment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import river
from prometheus_client import CollectorRegistry

from retrain.configure import policy_config
from retrain.consumers.admission import AdmittedModels
from retrain.consumers.decoding import decode_record
from retrain.consumers.expiry import expire_joins
from retrain.consumers.metrics import DetectorMetrics
from retrain.consumers.opening import PartitionOpener
from retrain.consumers.partition_state import PartitionStates
from retrain.consumers.restoring import WATCH_PREFIX, WatchRestorer
from retrain.consumers.service import InvalidRecord, Outputs
from retrain.consumers.state import StateChangelog
from retrain.consumers.tally import BatchTally
from retrain.consumers.updates import ModelUpdates
from retrain.decisions.admission import ModelAdmission
from retrain.decisions.checkpoint import Snapshot, encode_snapshot
from retrain.decisions.drift import task_of
from retrain.decisions.join import LabelJoiner, LabelOutcome, PredictionOutcome, ahead_of_arrival
from retrain.decisions.policy import ModelWatch, ServedVersion
from retrain.kafka import Consumer, FatalFailure, Record, TopicPartition
from retrain.schemas import (
    LabeledExample,
    LabelEvent,
    ModelUpdatedEvent,
    PredictionEvent,
    RetrainEvent,
    RetrainReason,
    RetrainTrace,
    StreamPosition,
)
from retrain.schemas.types import utc_now
from retrain.settings import DetectorSettings, TopicSettings
from retrain.state.join import StoredJoiner
from retrain.state.store import StoreUnusable

log = logging.getLogger(__name__)


class DetectorService:
    name = "detector"

    def __init__(
        self,
        settings: DetectorSettings,
        topics: TopicSettings,
        updates: Consumer | None = None,
        registry: CollectorRegistry | None = None,
        changelog: StateChangelog | None = None,
        state_key: bytes | None = None,
        admission: ModelAdmission | None = None,
        states: PartitionStates | None = None,
    ) -> None:
        self.settings = settings
        # The on-disk state (rocksdb): pending joins and the models' watches, per partition, with a changelog.
        self.states = states
        self.topics = topics
        # Snapshots need both: where to write them, and the key that signs them.
        self.changelog = changelog if state_key is not None else None
        self.state_key = state_key
        self._models_in: dict[int, set[str]] = {}  # partition -> the models whose joins it carries
        self._dirty: set[int] = set()  # partitions with records handled since their last snapshot
        self._changed_watches: set[str] = set()  # models whose watch changed since the stores last took them
        self._committed_at: dict[tuple[str, int], int] = {}
        self.updates = ModelUpdates(updates, topics.model_updates, self._on_update) if updates is not None else None
        self.metrics = DetectorMetrics(registry or CollectorRegistry())
        if states is not None:
            states.metrics = self.metrics
        # The models this instance takes on; restored watches and promoted versions are known (see _restore).
        self.admission = AdmittedModels(admission if admission is not None else ModelAdmission(), self.metrics)
        self.configs = {task: policy_config(settings, task) for task in ("classification", "regression")}
        self.joiners: dict[int, LabelJoiner | StoredJoiner] = {}
        # (topic, partition) -> the offset its store covers up to, while records below it may still arrive
        self._covered: dict[tuple[str, int], int] = {}
        self._read_to: dict[tuple[str, int], int] = {}  # (topic, partition) -> the offset after the last one read
        self.watches: dict[str, ModelWatch] = {}
        self.versions: dict[str, ServedVersion] = {}
        self._tally = BatchTally()
        self.restorer = WatchRestorer(
            state_key, self.configs, settings.regression_model_ids, self.admission, self.metrics
        )
        # Opens each partition's joiner on its first read, adopting its restored watches into these mappings.
        self.opener = PartitionOpener(
            settings,
            topics,
            states,
            self.changelog,
            self.restorer,
            self.metrics,
            watches=self.watches,
            versions=self.versions,
            models_in=self._models_in,
            covered=self._covered,
        )
        if self.updates is not None and not self.updates.catch_up():
            self.updates.close()
            self.updates = None

    # -- the Service protocol -----------------------------------------------------------------------------

    def handle(self, record: Record, out: Outputs) -> None:
        tally = self._tally
        tally.consumed[record.topic] = tally.consumed.get(record.topic, 0) + 1
        now = time.time()
        if record.timestamp >= 0:
            tally.ages.append(max(0.0, now - record.timestamp / 1000))
        joiner = self._joiner(record.partition)
        if self._covered:
            covered = self._covered.get((record.topic, record.partition))
            if covered is not None:
                if record.offset < covered:
                    return  # its effects are in the partition's store already
                del self._covered[(record.topic, record.partition)]
        self._read_to[(record.topic, record.partition)] = record.offset + 1
        self._dirty.add(record.partition)
        stored = self.states is not None
        if record.topic == self.topics.predictions:
            prediction = decode_record(record, PredictionEvent)
            self.admission.require(prediction.model_id)
            self._require_plausible_time(prediction.timestamp, record, now)
            if stored:
                outcome, example = joiner.add_prediction(prediction, record.offset, record.value)  # type: ignore[call-arg]
            else:
                outcome, example = joiner.add_prediction(prediction, record.offset)
            if outcome is PredictionOutcome.DUPLICATE:
                self.metrics.joins.labels("duplicate_prediction").inc()
            if self.settings.feature_drift:
                self._features(prediction, record, out)
        elif record.topic == self.topics.labels:
            label = decode_record(record, LabelEvent)
            self.admission.require(label.model_id)
            self._require_plausible_time(label.timestamp, record, now)
            if stored:
                outcome, example = joiner.add_label(label, record.offset, record.value)  # type: ignore[call-arg]
            else:
                outcome, example = joiner.add_label(label, record.offset)
            if outcome is LabelOutcome.DUPLICATE:
                self.metrics.joins.labels("duplicate_label").inc()
        else:
            raise InvalidRecord("unexpected_topic", f"the detector does not read {record.topic}")
        if example is not None:
            self._joined(example, record, out)

    def _require_plausible_time(self, event_time: datetime, record: Record, now: float) -> None:
        record_time = record.timestamp / 1000 if record.timestamp >= 0 else None
        skew = self.settings.max_event_time_skew_s
        ahead = ahead_of_arrival(event_time.timestamp(), record_time, now, skew)
        if ahead > 0:
            raise InvalidRecord(
                "future_event_time",
                f"event time {event_time.isoformat()} is {ahead + skew:.0f} s ahead of the record's arrival (at most "
                f"{skew:.0f} s allowed: RETRAIN_DETECTOR_MAX_EVENT_TIME_SKEW_S); it would expire pending joins",
            )

    def after_batch(self, out: Outputs) -> None:
        self._tally.report(self.metrics, self.name)
        self._tally = BatchTally()
        if self.updates is not None:
            self.updates.poll()
        expire_joins(self.joiners, self.metrics, self.topics.labels, self.name, out)

    def committable(self, partition: TopicPartition, position: int) -> int:
        joiner = self.joiners.get(partition.partition)
        if joiner is None or isinstance(joiner, StoredJoiner):
            return position  # a store holds the pending records: commits need not wait for them
        # Both topics' limits come from one computation over the positions read so far (the same for both
        # calls of a commit), so that no join has one side committed and the other not.
        read = {
            topic: self._read_to.get((topic, partition.partition), position)
            for topic in (self.topics.predictions, self.topics.labels)
        }
        read[partition.topic] = position
        predictions, labels = joiner.commit_offsets(read[self.topics.predictions], read[self.topics.labels])
        return predictions if partition.topic == self.topics.predictions else labels

    def prepare_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Before the offsets are committed: snapshot every partition read since its last snapshot.

        The snapshots go out with the batch's outputs; the loop flushes both before it commits. With the
        on-disk store, each model's watch is a signed record of its partition's store, and every store with
        changes sends them to its changelog.
        """
        if self.states is not None:
            self._stage_stores()
            return
        if self.changelog is None or self.state_key is None or not self._dirty:
            self._dirty.clear()
            return
        for partition in sorted(self._dirty):
            joiner = self.joiners.get(partition)
            if joiner is None:
                continue
            models = self._models_in.get(partition, set())
            snapshot = Snapshot(
                partition, {m: self.watches[m] for m in models if m in self.watches}, joiner.unsettled_ids()
            )
            self.changelog.save(partition, encode_snapshot(snapshot, self.state_key, river.__version__))
            self.metrics.state_snapshots.inc()
        self._dirty.clear()

    def _stage_stores(self) -> None:
        assert self.states is not None
        for partition, store in self.states.stores.items():
            dirty = partition in self._dirty
            if dirty and self.state_key is not None:
                for model_id in self._models_in.get(partition, set()) & self._changed_watches:
                    watch = self.watches.get(model_id)
                    if watch is not None:
                        snapshot = Snapshot(partition, {model_id: watch}, [])
                        store.put(
                            WATCH_PREFIX + model_id.encode(),
                            encode_snapshot(snapshot, self.state_key, river.__version__),
                        )
                        self.metrics.state_snapshots.inc()
            if dirty or store.staged:
                offsets = dict(store.meta.get("offsets", {}))
                for role, topic in (("predictions", self.topics.predictions), ("labels", self.topics.labels)):
                    read = self._read_to.get((topic, partition))
                    if read is not None:
                        offsets[role] = read
                self.states.stage(partition, offsets)
        self._dirty.clear()
        self._changed_watches.clear()

    def outputs_written(self) -> None:
        """The batch's outputs and changelog records are durable in Kafka: the stores write the batch locally."""
        if self.states is not None:
            try:
                self.states.written()
            except StoreUnusable as error:  # stop without committing past what the store holds
                raise FatalFailure(str(error), "StoreUnusable") from error

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """The offsets are committed: joins now behind both topics' commits will not be read again."""
        self._committed_at.update({(tp.topic, tp.partition): offset for tp, offset in offsets.items()})
        for partition in {tp.partition for tp in offsets}:
            joiner = self.joiners.get(partition)
            predictions = self._committed_at.get((self.topics.predictions, partition))
            labels = self._committed_at.get((self.topics.labels, partition))
            if isinstance(joiner, LabelJoiner) and predictions is not None and labels is not None:
                joiner.settle(predictions, labels)

    def partitions_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        # The pending joins of a revoked partition are read again by its next owner (we committed no
        # further than the oldest of them); the models' watches stay, keyed by model_id.
        for partition in partitions:
            self._read_to.pop((partition.topic, partition.partition), None)
            self._committed_at.pop((partition.topic, partition.partition), None)
            self._covered.pop((partition.topic, partition.partition), None)
            if partition.topic == self.topics.predictions:
                self.joiners.pop(partition.partition, None)
                if self.states is not None:
                    self.states.close(partition.partition)
                self._dirty.discard(partition.partition)
                for model_id in self._models_in.pop(partition.partition, set()):
                    self.watches.pop(model_id, None)  # its next owner restores it from the snapshot

    def partitions_assigned(self, consumer: Consumer, partitions: Iterable[TopicPartition]) -> None:
        """Restored lazily, on a partition's first record (see _joiner). In memory, uncommitted records (pending
        joins included) are read again from the commit; with the store, reading resumes where the store ends."""
        self.opener.consumer = consumer

    def close(self) -> None:
        if self.updates is not None:
            self.updates.close()
        if self.changelog is not None:
            self.changelog.close()
        if self.states is not None:
            self.states.close_all()

    # -- internals ----------------------------------------------------------------------------------------

    def _joiner(self, partition: int) -> LabelJoiner | StoredJoiner:
        joiner = self.joiners.get(partition)
        if joiner is None:
            joiner = self.joiners[partition] = self.opener.open(partition)
        return joiner

    def watch(self, model_id: str) -> ModelWatch:
        watch = self.watches.get(model_id)
        if watch is None:
            task = task_of(model_id, self.settings.regression_model_ids)
            served = self.versions.get(model_id, ServedVersion(0))
            watch = self.watches[model_id] = ModelWatch(model_id, self.configs[task], served.version)
            watch.validation_accuracy, watch.validation_holdout = served.accuracy, served.holdout
            # Start this model's counters at 0, so that increase() in alerts and dashboards sees the first event.
            self.metrics.retrain_events.start(model_id, *(reason.value for reason in RetrainReason))
            self.metrics.detections.start(model_id, *(spec.name for spec in watch.config.detectors))
        return watch

    def _joined(self, example: LabeledExample, record: Record, out: Outputs) -> None:
        models = self._models_in.get(record.partition)
        if models is None:
            models = self._models_in[record.partition] = set()
        models.add(example.model_id)
        self._changed_watches.add(example.model_id)
        out.emit(example)
        watch = self.watch(example.model_id)
        self._tally.joined(watch)
        try:
            event = watch.observe(example)
        except ValueError as error:
            raise InvalidRecord("invalid_target", str(error)) from error
        for detection in watch.last_detections:
            self.metrics.detections.inc(example.model_id, detection.detector)
        for name in watch.monitor.warnings if watch.monitor is not None else ():
            self.metrics.warnings.inc(example.model_id, name)
        if event is not None:
            self._publish(event, record, out)

    def _features(self, prediction: PredictionEvent, record: Record, out: Outputs) -> None:
        watch = self.watch(prediction.model_id)
        self._changed_watches.add(prediction.model_id)
        event = watch.observe_prediction(prediction)
        for _feature, detection in watch.last_feature_detections:
            self.metrics.detections.inc(prediction.model_id, f"{detection.detector}[feature]")
        if event is not None:
            self._publish(event, record, out)

    def _publish(self, event: RetrainEvent, record: Record, out: Outputs) -> None:
        position = StreamPosition(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(max(record.timestamp, 0) / 1000, UTC),
        )
        evidence = event.evidence.model_copy(update={"position": position})
        event = event.model_copy(update={"evidence": evidence, "trace": RetrainTrace(detected=utc_now())})
        log.info("retrain %s: %s by %s", event.model_id, event.reason.value, event.detector)
        self.metrics.retrain_events.inc(event.model_id, event.reason.value)
        # The labeled examples the event speaks of are written first: the trainer, on reading the event, trains
        # on labeled-examples up to its end offsets, which must include them (events are rare: the wait is cheap).
        out.publisher.flush()
        out.emit(event)

    def _on_update(self, update: ModelUpdatedEvent) -> None:
        if update.promoted and update.version is not None and self.admission.known(update.model_id):
            self._model_updated(update)

    def _model_updated(self, update: ModelUpdatedEvent) -> None:
        assert update.version is not None
        holdout = update.metrics.get("n_holdout")
        accuracy = update.metrics.get("accuracy")
        served = ServedVersion(update.version, accuracy, None if holdout is None else int(holdout))
        self.versions[update.model_id] = served
        self.metrics.model_version.set(update.model_id, update.version)
        watch = self.watches.get(update.model_id)
        if watch is None:
            return
        if update.version != watch.version:
            watch.model_updated(*served)
            self._changed_watches.add(update.model_id)
        elif watch.validation_accuracy is None and served.accuracy is not None:
            # adopted from its first labeled examples before this update arrived: its validation comes now
            watch.validation_accuracy, watch.validation_holdout = served.accuracy, served.holdout
            self._changed_watches.add(update.model_id)
