"""How a service becomes a running consume loop: its producer, its consumer, the loop and its /metrics endpoint.

The three services differ only in what they are given (topics, group, batch size, client tuning): each
``run_*`` builds its service from the settings and hands it to :func:`service_loop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from retrain.configure import estimator_choice, training_config
from retrain.consumers.detector import DetectorService
from retrain.consumers.metrics import serve_metrics
from retrain.consumers.partition_state import PartitionStates
from retrain.consumers.runtime import ConsumeLoop
from retrain.consumers.scorer import ScorerService
from retrain.consumers.state import StateChangelog
from retrain.consumers.trainer import TrainerService
from retrain.decisions.admission import ModelAdmission
from retrain.decisions.checkpoint import snapshot_key
from retrain.kafka import Consumer, Producer, make_consumer, service_producers
from retrain.producers import EventPublisher
from retrain.registry import RegistryError, open_registry
from retrain.settings import Settings

log = logging.getLogger(__name__)

# Flushed after every poll batch, so a long linger costs no latency: it only fills bigger batches (kafka-python's
# send costs about half as much per record with 1 MiB batches).
BATCHING_PRODUCER: dict[str, Any] = {"linger_ms": 50, "batch_bytes": 1024 * 1024}


def service_publisher(
    settings: Settings, name: str, group_id: str, **tuning: Any
) -> tuple[EventPublisher, Callable[[], Producer] | None]:
    """The service's publisher, and under ``exactly_once`` how to make its producer again once fenced."""
    producer, renew_producer = service_producers(settings.kafka, name, group_id, **tuning)
    return EventPublisher(producer, settings.topics), renew_producer


def service_loop(
    settings: Settings,
    service: Any,
    publisher: EventPublisher,
    renew_producer: Callable[[], Producer] | None,
    *,
    topics: list[str],
    group_id: str,
    max_records: int,
    metrics_registry: CollectorRegistry,
    metrics_port: int,
    serve: bool,
    consumer: Consumer | None = None,
) -> ConsumeLoop:
    """The consume loop of ``service`` on ``topics`` (a consumer of ``group_id`` unless given), its metrics served
    on ``metrics_port`` when ``serve``."""
    metrics = service.metrics  # every service counts dead letters, lag and recoveries
    if consumer is None:
        consumer = make_consumer(settings.kafka, group_id, max_poll_records=max_records)
    loop = ConsumeLoop(
        service,
        consumer,
        publisher,
        topics,
        max_records=max_records,
        on_dead_letter=metrics.dead_letter,
        on_lag=metrics.lag,
        on_recovery=metrics.recovery,
        renew_producer=renew_producer,
    )
    if serve:
        serve_metrics(metrics_registry, settings.metrics.host, metrics_port)
    return loop


def run_detector(settings, *, registry: CollectorRegistry | None = None, serve: bool = True):
    """Build the detector's clients and loop from the settings; return the loop (call ``run()``)."""

    detector = settings.detector
    registry = registry or CollectorRegistry()
    publisher, renew_producer = service_publisher(settings, "detector", detector.group_id, **BATCHING_PRODUCER)
    changelog, state_key, states = None, None, None
    if detector.state_snapshots:
        if settings.registry.hmac_key is None:
            log.warning(
                "detector state snapshots are off: they are signed with RETRAIN_REGISTRY_HMAC_KEY, which is not set "
                "(a restart or rebalance starts the detectors afresh; no join is lost)"
            )
        else:
            state_key = snapshot_key(settings.registry.hmac_key.get_secret_value().encode())
        if state_key is not None and detector.state_store == "memory":
            changelog = StateChangelog(
                publisher,
                make_consumer(settings.kafka, None),
                settings.topics.detector_state,
                max_record_bytes=detector.snapshot_record_bytes,
            )
    if detector.state_store == "rocksdb":
        states = PartitionStates(
            detector.state_dir / detector.group_id,
            publisher,
            make_consumer(settings.kafka, None),
            settings.topics.detector_changelog,
            owner=detector.group_id,
        )
    service = DetectorService(
        detector,
        settings.topics,
        updates=make_consumer(settings.kafka, None),
        registry=registry,
        changelog=changelog,
        state_key=state_key,
        admission=ModelAdmission(settings.models.allowed_ids, settings.models.max_per_service),
        states=states,
    )
    return service_loop(
        settings,
        service,
        publisher,
        renew_producer,
        topics=[settings.topics.predictions, settings.topics.labels],
        group_id=detector.group_id,
        max_records=detector.max_poll_records,
        metrics_registry=registry,
        metrics_port=settings.metrics.detector_port,
        serve=serve,
    )


def run_trainer(settings, *, registry: CollectorRegistry | None = None, serve: bool = True):
    """Build the trainer's clients and loop from the settings; return the loop (call ``run()``)."""

    trainer = settings.trainer
    metrics_registry = registry or CollectorRegistry()
    service = TrainerService(
        settings.topics,
        open_registry(settings.registry),
        training_config(trainer),
        estimator_choice(trainer),
        buffer_max_examples=trainer.buffer_max_examples,
        buffer_max_age_s=trainer.buffer_max_age_s,
        cold_start_min=trainer.cold_start_min,
        regression_models=trainer.regression_model_ids,
        metrics_registry=metrics_registry,
        fit_threads=trainer.fit_threads,
        fit_workers=trainer.fit_workers,
        fit_timeout_s=trainer.fit_timeout_s,
        admission=ModelAdmission(settings.models.allowed_ids, settings.models.max_per_service),
    )
    service.fits.start()  # the workers import scikit-learn now, not at the first fit
    service.consumer = make_consumer(
        settings.kafka, trainer.group_id, max_poll_interval_ms=trainer.max_poll_interval_ms, max_poll_records=2_000
    )
    publisher, renew_producer = service_publisher(settings, "trainer", trainer.group_id)
    return service_loop(
        settings,
        service,
        publisher,
        renew_producer,
        topics=[settings.topics.labeled_examples, settings.topics.retrain_events],
        group_id=trainer.group_id,
        max_records=2_000,
        metrics_registry=metrics_registry,
        metrics_port=settings.metrics.trainer_port,
        serve=serve,
        consumer=service.consumer,
    )


def run_scorer(settings: Settings, *, registry: CollectorRegistry | None = None, serve: bool = True) -> ConsumeLoop:
    """Build the scorer's clients and loop from the settings; return the loop (call ``run()``)."""

    if settings.registry.hmac_key is None:
        raise RegistryError(
            "the scorer loads signed models: set RETRAIN_REGISTRY_HMAC_KEY to the trainer's key (and "
            "RETRAIN_REGISTRY_PATH to its registry)"
        )
    scorer = settings.scorer
    registry = registry or CollectorRegistry()
    service = ScorerService(
        settings.topics,
        open_registry(settings.registry),
        fallback=scorer.fallback,
        updates=make_consumer(settings.kafka, None),
        metrics_registry=registry,
        admission=ModelAdmission(settings.models.allowed_ids, settings.models.max_per_service),
        max_loaded=scorer.max_loaded_models,
    )
    publisher, renew_producer = service_publisher(settings, "scorer", scorer.group_id, **BATCHING_PRODUCER)
    return service_loop(
        settings,
        service,
        publisher,
        renew_producer,
        topics=[settings.topics.scoring_requests],
        group_id=scorer.group_id,
        max_records=scorer.max_poll_records,
        metrics_registry=registry,
        metrics_port=settings.metrics.scorer_port,
        serve=serve,
    )
