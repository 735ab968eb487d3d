"""How the detector opens a partition's join state on its first read after an assignment: its on-disk store or
its changelog snapshot, with the models' watches restored from it."""

from __future__ import annotations

import logging

from retrain.consumers.metrics import DetectorMetrics
from retrain.consumers.partition_state import PartitionStates
from retrain.consumers.restoring import WatchRestorer
from retrain.consumers.state import StateChangelog
from retrain.decisions.checkpoint import Snapshot
from retrain.decisions.join import LabelJoiner
from retrain.decisions.policy import ModelWatch, ServedVersion
from retrain.kafka import Consumer, FatalFailure, RetriableFailure, TopicPartition
from retrain.settings import DetectorSettings, TopicSettings
from retrain.state.join import StoredJoiner
from retrain.state.store import PartitionStore, StoreLocked, StoreUnusable

log = logging.getLogger("retrain.consumers.detector")  # the detector's log, as the restore is part of its work


class PartitionOpener:
    """Opens a partition's joiner and adopts its restored watches into the detector's own (shared) mappings."""

    def __init__(
        self,
        settings: DetectorSettings,
        topics: TopicSettings,
        states: PartitionStates | None,
        changelog: StateChangelog | None,
        restorer: WatchRestorer,
        metrics: DetectorMetrics,
        *,
        watches: dict[str, ModelWatch],
        versions: dict[str, ServedVersion],
        models_in: dict[int, set[str]],
        covered: dict[tuple[str, int], int],
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.states = states
        self.changelog = changelog
        self.restorer = restorer
        self.metrics = metrics
        # The detector's mappings, updated in place: model -> watch, model -> the version in service and its validation,
        # partition -> the models whose joins it carries, (topic, partition) -> the offset its store covers up to.
        self.watches = watches
        self.versions = versions
        self.models_in = models_in
        self.covered = covered
        self.consumer: Consumer | None = None  # the loop's, to seek a restored partition past what its store holds

    def open(self, partition: int) -> LabelJoiner | StoredJoiner:
        """The partition's joiner: its store's when there are stores, else an in-memory one restored from the
        changelog. A KafkaFailure leaves nothing opened: the next read tries again."""
        if self.states is not None:
            return self._open_store(partition)
        joiner = LabelJoiner(
            prediction_ttl_s=self.settings.prediction_ttl_s,
            label_ttl_s=self.settings.label_ttl_s,
            max_pending=self.settings.pending_cap,
        )
        self._restore(partition, joiner)
        return joiner

    def _open_store(self, partition: int) -> StoredJoiner:
        """The partition's store, caught up with its changelog; its models' watches adopted; reading moved on to
        where the store ends (records below it are skipped)."""
        assert self.states is not None
        try:
            store = self.states.open(partition)
        except StoreLocked as error:  # its previous owner in this machine may be letting it go
            raise RetriableFailure(str(error), "StoreLocked") from error
        except StoreUnusable as error:
            raise FatalFailure(str(error), "StoreUnusable") from error
        self._adopt_watches(partition, store)
        offsets = store.meta.get("offsets", {})
        for role, topic in (("predictions", self.topics.predictions), ("labels", self.topics.labels)):
            covered = offsets.get(role)
            if covered is None:
                continue
            self.covered[(topic, partition)] = covered
            if self.consumer is not None:
                where = TopicPartition(topic, partition)
                if covered > self.consumer.position(where):
                    self.consumer.seek(where, covered)
        return StoredJoiner(
            store,
            prediction_ttl_s=self.settings.prediction_ttl_s,
            label_ttl_s=self.settings.label_ttl_s,
            max_pending=self.settings.pending_cap,
        )

    def _adopt_watches(self, partition: int, store: PartitionStore) -> None:
        snapshot = self.restorer.from_store(partition, store)
        if snapshot is not None:
            self._adopt(partition, snapshot)

    def _restore(self, partition: int, joiner: LabelJoiner) -> None:
        """The partition is read for the first time since its assignment: carry on from its snapshot."""
        if self.changelog is None:
            return
        snapshot = self.restorer.from_changelog(partition, self.changelog)
        if snapshot is not None:
            self._adopt(partition, snapshot)
            joiner.restore_joined(snapshot.joined)

    def _adopt(self, partition: int, snapshot: Snapshot) -> None:
        """Take on a restored snapshot's watches (those still valid under today's settings and allow-list)."""
        watches = self.restorer.still_valid(snapshot, self.versions)
        self.watches.update(watches)
        self.models_in.setdefault(partition, set()).update(watches)
        self.metrics.state_restores.labels("restored").inc()
        log.info(
            "partition %d: restored the state of %d models and %d joins", partition, len(watches), len(snapshot.joined)
        )
