"""The scorer service: score ``scoring-requests`` with each model's promoted version, publish ``predictions``.

Requests are decoded one by one and scored in batches: at the end of every poll batch, one ``predict`` call per
model. The version in service comes from the model registry (the champion, verified before it is unpickled) the
first time a model is seen; after that, a promoted ``ModelUpdatedEvent`` (read by a separate, group-less consumer
from the start of ``model-updates``) swaps it. Swaps happen between batches: the new version is loaded and
verified first, and only then replaces the old one, so every request is scored by exactly one version and a
version that fails to load (tampered, missing) leaves the old one serving.

A model with no promoted version yet is answered by ``RETRAIN_SCORER_FALLBACK_PREDICTION`` with model_version 0;
the labels of those predictions are what the detector's cold-start trigger trains version 1 from.

Requests of a model the scorer does not admit (:mod:`consumers.admission`) go to ``dead-letters`` as
``unknown_model``. At most ``RETRAIN_SCORER_MAX_LOADED_MODELS`` models stay loaded: the least recently used is
unloaded, and its next request loads and verifies the champion again, as on first sight.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError

from retrain.consumers.admission import AdmittedModels
from retrain.consumers.decoding import decode_record
from retrain.consumers.metrics import ScorerMetrics, observe_many
from retrain.consumers.service import InvalidRecord, Outputs
from retrain.consumers.updates import ModelUpdates
from retrain.decisions.admission import ModelAdmission
from retrain.decisions.scoring import Prediction, ServedModel, score_batch
from retrain.kafka import Consumer, Record, TopicPartition
from retrain.registry import Registry, RegistryError
from retrain.registry.loading import ModelLoadError, load_version
from retrain.schemas import ModelUpdatedEvent, PredictionEvent, ScoringRequest
from retrain.schemas.fast import trusted
from retrain.schemas.types import Target
from retrain.settings import TopicSettings

log = logging.getLogger(__name__)

Pending = tuple[Record, ScoringRequest]
_TARGET = TypeAdapter(Target)  # a prediction is validated as PredictionEvent.prediction is


class ScorerService:
    name = "scorer"

    def __init__(
        self,
        topics: TopicSettings,
        registry: Registry,
        *,
        fallback: Prediction = 0,
        updates: Consumer | None = None,
        metrics_registry: CollectorRegistry | None = None,
        admission: ModelAdmission | None = None,
        max_loaded: int = 200,
    ) -> None:
        self.topics = topics
        self.registry = registry
        self.fallback = fallback
        self.updates = ModelUpdates(updates, topics.model_updates, self.model_updated) if updates is not None else None
        self.metrics = ScorerMetrics(metrics_registry or CollectorRegistry())
        self.admission = AdmittedModels(admission if admission is not None else ModelAdmission(), self.metrics)
        self.served: dict[str, ServedModel] = {}  # one per admitted model seen, a loaded one or the fallback
        # The served models that are loaded (not the fallback), least recently used first: at most max_loaded.
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, None] = OrderedDict()
        # The latest promoted update of each model: its sha256 is checked when the model is first loaded.
        self.announced: dict[str, ModelUpdatedEvent] = {}
        self._pending: list[Pending] = []
        self._consumed = self.metrics.records_consumed.labels(self.name, topics.scoring_requests)
        self._latency = self.metrics.processing_latency.labels(self.name)
        self._predictions: dict[str, Any] = {}
        # A traced swap awaiting its first prediction: model -> (version, when swapped, when detected or None).
        self._first_due: dict[str, tuple[int, float, float | None]] = {}
        if self.updates is not None and not self.updates.catch_up():
            self.updates.close()
            self.updates = None

    # -- the Service protocol -----------------------------------------------------------------------------

    def handle(self, record: Record, out: Outputs) -> None:
        """Decode and hold a request; the batch is scored in :meth:`after_batch`."""
        if record.topic != self.topics.scoring_requests:
            raise InvalidRecord("unexpected_topic", f"the scorer does not read {record.topic}")
        self._consumed.inc()
        request = decode_record(record, ScoringRequest)
        self.admission.require(request.model_id)
        self._pending.append((record, request))

    def after_batch(self, out: Outputs) -> None:
        """Apply model updates, then score the batch: one version per model for all of it."""
        if self.updates is not None:
            self.updates.poll()
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        started = time.perf_counter()
        by_model: dict[str, list[Pending]] = {}
        for item in pending:
            by_model.setdefault(item[1].model_id, []).append(item)
        for model_id, items in by_model.items():
            try:
                self._score(model_id, items, out)
            except Exception as error:  # a bug must not lose the batch: its requests are dead-lettered instead
                log.exception("scoring %d requests of %s failed", len(items), model_id)
                for record, _ in items:
                    out.dead_letter_record(record, error, "processing_error")
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def committable(self, partition: TopicPartition, position: int) -> int:
        return position  # every request read has been scored (after_batch runs before the commit)

    def partitions_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Nothing held between batches; requests of a batch given up (Kafka failed under it) are read again."""
        self._pending.clear()

    def partitions_assigned(self, consumer: Consumer, partitions: Iterable[TopicPartition]) -> None:
        """Nothing to restore: models are loaded when their first request arrives."""

    def close(self) -> None:
        if self.updates is not None:
            self.updates.close()

    # -- models in service ----------------------------------------------------------------------------------

    def serving(self, model_id: str) -> ServedModel:
        """The version in service for ``model_id``; on first sight, the registry's champion (or the fallback)."""
        served = self.served.get(model_id)
        if served is None:  # first sight, or unloaded since: loaded again, verified as the first time
            served = self._first_sight(model_id)
            self._serve(served)
            self.metrics.swaps.labels(model_id)  # counters start at 0, so increase() sees the first one
            self.metrics.load_failures.labels(model_id)
            self.metrics.model_version.labels(model_id).set(served.version)
        elif model_id in self._loaded:
            self._loaded.move_to_end(model_id)
        return served

    def _serve(self, served: ServedModel) -> None:
        """Put ``served`` into service, most recently used; unload the least recently used beyond max_loaded."""
        model_id = served.model_id
        self.served[model_id] = served
        if served.is_fallback:
            self._loaded.pop(model_id, None)
        else:
            self._loaded[model_id] = None
            self._loaded.move_to_end(model_id)
        while len(self._loaded) > self.max_loaded:
            unloaded, _ = self._loaded.popitem(last=False)
            del self.served[unloaded]  # its next request loads the champion again
            self.metrics.unloads.inc()
            log.info("%s unloaded (the least recently used of %d loaded models)", unloaded, self.max_loaded + 1)
        self.metrics.loaded_models.set(len(self._loaded))

    def model_updated(self, update: ModelUpdatedEvent) -> bool:
        """Swap to a promoted version once it is loaded and verified; True if the version in service changed.

        A model not served yet only has the update noted: its first request loads the registry's champion.
        """
        if not update.promoted or update.version is None or not self.admission.known(update.model_id):
            return False
        self.announced[update.model_id] = update
        current = self.served.get(update.model_id)
        if current is None or current.version == update.version:
            return False
        try:
            loaded = load_version(self.registry, update.model_id, update.version, update.sha256)
        except ModelLoadError as error:
            self._load_failed(update.model_id, update.version, current, error)
            return False
        self._serve(loaded)
        if update.trace is not None:  # a retrain's answer (not a promotion by hand): time its last stages
            swapped = time.time()
            self.metrics.stages.labels("swapped").observe(max(0.0, swapped - update.updated_at.timestamp()))
            detected = update.trace.detected.timestamp() if update.trace.detected is not None else None
            self._first_due[update.model_id] = (loaded.version, swapped, detected)
        self.metrics.swaps.labels(update.model_id).inc()
        self.metrics.model_version.labels(update.model_id).set(loaded.version)
        log.info(
            "%s: serving version %d (was %d, %s)",
            update.model_id,
            loaded.version,
            current.version,
            update.outcome.value,
        )
        return True

    def _first_sight(self, model_id: str) -> ServedModel:
        fallback = ServedModel(model_id, 0)
        try:
            champion = self.registry.champion(model_id)
        except (RegistryError, OSError) as error:  # an inconsistent or unreadable champion.json
            self._load_failed(model_id, None, fallback, error)
            return fallback
        if champion is None:
            log.info("%s has no promoted version: answering %r with model_version 0", model_id, self.fallback)
            return fallback
        announced = self.announced.get(model_id)
        sha256 = announced.sha256 if announced is not None and announced.version == champion.version else None
        try:
            served = load_version(self.registry, model_id, champion.version, sha256)
        except ModelLoadError as error:
            self._load_failed(model_id, champion.version, fallback, error)
            return fallback
        log.info("%s: serving version %d", model_id, served.version)
        return served

    def _load_failed(self, model_id: str, version: int | None, kept: ServedModel, error: Exception) -> None:
        self.metrics.load_failures.labels(model_id).inc()
        what = f"version {version}" if version is not None else "its champion"
        log.error(
            "%s: %s could not be loaded, still serving version %d; promote a version again to retry: %s",
            model_id,
            what,
            kept.version,
            error,
        )

    # -- scoring ----------------------------------------------------------------------------------------------

    def _score(self, model_id: str, items: list[Pending], out: Outputs) -> None:
        served = self.serving(model_id)
        results = score_batch(served, [request.features for _, request in items], self.fallback)
        now = time.time()
        ages: list[float] = []
        scored = 0
        for (record, request), result in zip(items, results, strict=True):
            if result.error is not None:
                reason = "unusable_features"
                message = f"{model_id} version {served.version} cannot score these features: {result.error}"
                out.dead_letter_record(record, InvalidRecord(reason, message), reason)
                continue
            try:
                value = _TARGET.validate_python(result.prediction)
            except ValidationError as error:  # e.g. NaN from a regressor
                reason = "invalid_prediction"
                message = f"{model_id} version {served.version} predicted {result.prediction!r}: {error}"
                out.dead_letter_record(record, InvalidRecord(reason, message[:2048]), reason)
                continue
            for feature in result.mistyped:
                self.metrics.mistyped_features.labels(model_id, feature).inc()
            # The rest was validated with the request: built without validating it again (hot path).
            prediction = trusted(
                PredictionEvent,
                {
                    "schema_version": PredictionEvent.SCHEMA_VERSION,
                    "prediction_id": request.prediction_id,
                    "model_id": model_id,
                    "model_version": served.version,
                    "features": request.features,
                    "prediction": value,
                    "timestamp": request.timestamp,
                },
            )
            out.emit(prediction)
            scored += 1
            if record.timestamp >= 0:
                ages.append(max(0.0, now - record.timestamp / 1000))
        observe_many(self._latency, ages)
        due = self._first_due.get(model_id)
        if due is not None and scored and due[0] == served.version:
            del self._first_due[model_id]
            self.metrics.stages.labels("first_served").observe(max(0.0, now - due[1]))
            if due[2] is not None:
                self.metrics.stages.labels("total").observe(max(0.0, now - due[2]))
        counter = self._predictions.get(model_id)
        if counter is None:
            counter = self._predictions[model_id] = self.metrics.predictions.labels(model_id)
        counter.inc(scored)

    # -- model updates ----------------------------------------------------------------------------------------
