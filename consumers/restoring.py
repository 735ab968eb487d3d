"""Which restored watches a detector takes on: read from its store or its changelog, verified, and still valid
under today's settings and allow-list."""

from __future__ import annotations

import logging

import river

from retrain.consumers.admission import AdmittedModels
from retrain.consumers.metrics import DetectorMetrics
from retrain.consumers.state import StateChangelog
from retrain.decisions.checkpoint import Snapshot, SnapshotRefused, decode_snapshot
from retrain.decisions.drift import task_of
from retrain.decisions.policy import ModelWatch, PolicyConfig, ServedVersion
from retrain.state.store import PartitionStore

log = logging.getLogger("retrain.consumers.detector")

WATCH_PREFIX = b"W"  # store key prefix of a model's signed watch snapshot


class WatchRestorer:
    def __init__(
        self,
        state_key: bytes | None,
        configs: dict[str, PolicyConfig],
        regression_models: frozenset[str],
        admission: AdmittedModels,
        metrics: DetectorMetrics,
    ) -> None:
        self.state_key = state_key
        self.configs = configs
        self.regression_models = regression_models
        self.admission = admission
        self.metrics = metrics

    def from_store(self, partition: int, store: PartitionStore) -> Snapshot | None:
        """The watches the partition's store holds, as one snapshot; None when there are none (or no key)."""
        if self.state_key is None:
            return None
        watches: dict[str, ModelWatch] = {}
        for key, value in store.scan(WATCH_PREFIX):
            try:
                watches.update(decode_snapshot(value, self.state_key, river.__version__).watches)
            except SnapshotRefused as refused:
                log.error("detector state of %s refused: %s", key[len(WATCH_PREFIX) :].decode(), refused)
                self.metrics.state_restores.labels(refused.reason).inc()
        if not watches:
            self.metrics.state_restores.labels("empty").inc()
            return None
        return Snapshot(partition, watches, [])

    def from_changelog(self, partition: int, changelog: StateChangelog) -> Snapshot | None:
        """The partition's latest snapshot in the changelog topic; None when there is none or it is refused."""
        if self.state_key is None:
            return None
        try:
            data = changelog.load(partition)
            if data is None:
                self.metrics.state_restores.labels("empty").inc()
                return None
            return decode_snapshot(data, self.state_key, river.__version__)
        except SnapshotRefused as refused:
            log.error("detector state of partition %d refused: %s", partition, refused)
            self.metrics.state_restores.labels(refused.reason).inc()
            return None

    def still_valid(self, snapshot: Snapshot, versions: dict[str, ServedVersion]) -> dict[str, ModelWatch]:
        """The snapshot's watches whose configuration is today's and whose model is admitted, each brought to the
        version in service (``versions``: from the model updates)."""
        watches = {}
        for model_id, watch in snapshot.watches.items():
            if watch.config != self.configs[task_of(model_id, self.regression_models)]:
                log.warning("detector state of %s not restored: the detector settings changed since", model_id)
                self.metrics.state_restores.labels("config_changed").inc()
                continue
            if not self.admission.known(model_id):  # admitted before; refused by the allow-list now
                log.warning("detector state of %s not restored: not on the allow-list of model ids", model_id)
                self.metrics.state_restores.labels("not_admitted").inc()
                continue
            served = versions.get(model_id)
            if served is not None and served.version > watch.version:
                watch.model_updated(*served)  # promoted while nobody watched this partition
            watches[model_id] = watch
        return watches
