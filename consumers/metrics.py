"""Prometheus metrics of the services, declared in one place against a registry that tests can replace.

Label cardinality is bounded: ``model_id`` is a label, but only for the models a service admits
(:mod:`consumers.admission`: an allow-list, or at most ``RETRAIN_MODELS_MAX_PER_SERVICE``), so a flood of other
ids creates no series; nothing per prediction ever is.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from threading import Lock
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import metrics as _client_metrics
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class ServiceMetrics:
    """What every consuming service reports."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records_consumed = Counter(
            "retrain_records_consumed_total", "Records consumed, by topic", ["service", "topic"], registry=registry
        )
        self.dead_letters = Counter(
            "retrain_dead_letters_total",
            "Records sent to the dead-letter topic, by cause",
            ["service", "reason"],
            registry=registry,
        )
        self.processing_latency = Histogram(
            "retrain_processing_latency_seconds",
            "From a record's timestamp to its processing",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "retrain_consumer_lag",
            "Records between the consumer's position and the end of the partition",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self.kafka_recoveries = Counter(
            "retrain_kafka_recoveries_total",
            "Batches given up because Kafka failed under them (then rewound to the last commit), by error",
            ["service", "error"],
            registry=registry,
        )
        self.models_admitted = Gauge(
            "retrain_models_admitted",
            "Model ids this service admitted (the others' records go to dead-letters as unknown_model)",
            ["service"],
            registry=registry,
        )
        self.service = service

    def recovery(self, error: str) -> None:
        self.kafka_recoveries.labels(self.service, error).inc()

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(self.service, reason).inc()

    def lag(self, partition, behind: int) -> None:
        self.consumer_lag.labels(self.service, partition.topic, str(partition.partition)).set(behind)


def observe_many(histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(a)`` for each amount, with one update per bucket (a labelled child, no exemplars)."""
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1
        total += amount
    if not any(counts):
        return
    histogram._raise_if_not_observable()
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


class ModelSeries(Collector):
    """A counter or gauge labelled by model_id (and at most one more label), one compact row per model.

    prometheus-client keeps an object per labelled child (its own dicts, value and lock: about 650 bytes); with a
    dozen series per model they were most of a detector's memory per watched model. Here one family's series of a
    model are one array of doubles, (value, created) per series, created NaN where a series was never started.
    The exposition is the same as the children's, ``_created`` samples included.
    """

    def __init__(
        self,
        kind: Literal["counter", "gauge"],
        name: str,
        documentation: str,
        extra_label: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._kind = kind
        self._name = name.removesuffix("_total") if kind == "counter" else name
        self._documentation = documentation
        self._labelnames = ("model_id",) if extra_label is None else ("model_id", extra_label)
        self._columns: dict[str, int] = {}  # the extra label's value -> its series' column in every row
        self._rows: dict[str, array[float]] = {}
        self._lock = Lock()  # a scrape reads from another thread: rows and columns are added under it
        if registry is not None:
            registry.register(self)

    def start(self, model_id: str, *others: str) -> None:
        """Start the series at 0 (if not started yet), so that increase() sees their first event."""
        for other in others or ("",):
            self._offset(model_id, other)

    def inc(self, model_id: str, other: str = "", amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        row, offset = self._offset(model_id, other)
        row[offset] += amount

    def set(self, model_id: str, value: float, other: str = "") -> None:
        row, offset = self._offset(model_id, other)
        row[offset] = value

    def _offset(self, model_id: str, other: str) -> tuple[array[float], int]:
        """The model's row and where the series' value is in it, the series started if need be."""
        row, column = self._rows.get(model_id), self._columns.get(other)
        if row is not None and column is not None and 2 * column < len(row) and not math.isnan(row[2 * column + 1]):
            return row, 2 * column
        with self._lock:
            column = self._columns.setdefault(other, len(self._columns))
            row = self._rows.setdefault(model_id, array("d"))
            if len(row) <= 2 * column:
                row.extend([0.0, math.nan] * (column + 1 - len(row) // 2))
            if math.isnan(row[2 * column + 1]):
                row[2 * column], row[2 * column + 1] = 0.0, time.time()
        return row, 2 * column

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        kind = CounterMetricFamily if self._kind == "counter" else GaugeMetricFamily
        return kind(self._name, self._documentation, labels=self._labelnames)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        with self._lock:
            rows, columns = list(self._rows.items()), list(self._columns)
        use_created = self._kind == "counter" and _client_metrics._use_created
        for model_id, row in rows:
            values = row.tolist()
            for column, other in enumerate(columns[: len(values) // 2]):
                value, created = values[2 * column], values[2 * column + 1]
                if math.isnan(created):
                    continue
                labels = [model_id] if len(self._labelnames) == 1 else [model_id, other]
                if use_created:
                    family.add_metric(labels, value, created=created)  # type: ignore[call-arg]
                else:
                    family.add_metric(labels, value)
        return [family]


class DetectorMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__("detector", registry)
        # The per-model series are ModelSeries: a detector watches thousands of models. Registered in this order:
        # the join's series, the partition state's, the on-disk store's, the models'.
        self._join_series(registry)
        self._state_series(registry)
        self._store_series(registry)
        self._model_series(registry)

    def _join_series(self, registry: CollectorRegistry) -> None:
        self.labeled_examples = ModelSeries(
            "counter",
            "retrain_labeled_examples_total",
            "Predictions joined with their label, per model",
            None,
            registry,
        )
        self.joins = Counter(
            "retrain_joins_total",
            "Join outcomes: joined, expired_prediction, unmatched_label, duplicate_label, "
            "duplicate_prediction, evicted",
            ["outcome"],
            registry=registry,
        )
        self.pending = Gauge("retrain_join_pending", "Records waiting in the join buffers", ["side"], registry=registry)

    def _state_series(self, registry: CollectorRegistry) -> None:
        self.state_snapshots = Counter(
            "retrain_state_snapshots_total", "Partition state snapshots written to the changelog", registry=registry
        )
        self.state_restores = Counter(
            "retrain_state_restores_total",
            "Partition state restores: restored, empty (nothing to restore), or refused (bad_signature, "
            "river_version, format, not_a_snapshot, incomplete, config_changed, not_admitted)",
            ["outcome"],
            registry=registry,
        )

    def _store_series(self, registry: CollectorRegistry) -> None:
        # The on-disk state store (RETRAIN_DETECTOR_STATE_STORE=rocksdb), per partition.
        self.pending_by_partition = Gauge(
            "retrain_join_pending_partition",
            "Records waiting in a partition's join state",
            ["side", "partition"],
            registry=registry,
        )
        self.store_bytes = Gauge(
            "retrain_state_store_bytes",
            "Size of a partition's local state store on disk",
            ["partition"],
            registry=registry,
        )
        self.store_restore_seconds = Gauge(
            "retrain_state_restore_seconds",
            "Duration of a partition's last state restore (local store opened, changelog caught up)",
            ["partition"],
            registry=registry,
        )
        self.store_restored_records = Counter(
            "retrain_state_restore_records_total",
            "Changelog records read to restore partition state",
            registry=registry,
        )
        self.changelog_records = Counter(
            "retrain_state_changelog_records_total", "Records written to the state changelog", registry=registry
        )
        self.store_rebuilds = Counter(
            "retrain_state_store_rebuilds_total",
            "Local state stores thrown away and rebuilt from the changelog (unreadable, format)",
            ["reason"],
            registry=registry,
        )

    def _model_series(self, registry: CollectorRegistry) -> None:
        self.rolling_accuracy = ModelSeries(
            "gauge", "retrain_rolling_accuracy", "Accuracy over the last N labeled examples", None, registry
        )
        self.rolling_error = ModelSeries(
            "gauge", "retrain_rolling_error", "Mean error over the last N labeled examples", None, registry
        )
        self.detections = ModelSeries(
            "counter", "retrain_drift_detections_total", "Detector reports of a rising error", "detector", registry
        )
        self.warnings = ModelSeries(
            "counter",
            "retrain_drift_warnings_total",
            "Updates on which a detector was in its warning zone",
            "detector",
            registry,
        )
        self.retrain_events = ModelSeries(
            "counter", "retrain_retrain_events_total", "Retrain events published", "reason", registry
        )
        self.model_version = ModelSeries(
            "gauge", "retrain_model_version", "Model version the detector is watching", None, registry
        )


# The stages of a retrain on its way through the loop (RetrainTrace): each service times the ones it sees end.
LOOP_STAGES = {
    "published": "the detection to its retrain event's record (detector batch, producer linger)",
    "delivered": "the retrain event's record to the trainer reading it",
    "queued": "read to fit started (catching up on labeled examples, an earlier fit of the model, no free worker)",
    "fit": "fit started to its result collected by the trainer",
    "registered": "the result to the answer (registered, promoted, model-updated event made)",
    "swapped": "the answer to the scorer serving the new version (Kafka, the scorer's poll, loading)",
    "first_served": "the swap to the first prediction made by the new version",
    "total": "the detection to the first prediction made by the new version",
}


class TrainerMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__("trainer", registry)
        self.stages = loop_stages(registry)
        self.fit_seconds = Histogram(
            "retrain_fit_duration_seconds",
            "Time to fit and validate a challenger",
            ["model_id"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=registry,
        )
        self.fits_running = Gauge(
            "retrain_trainer_fits_running", "Challengers being fitted in the fit workers", registry=registry
        )
        self.window_size = Gauge(
            "retrain_training_window_examples",
            "Examples in the last training window",
            ["model_id"],
            registry=registry,
        )
        self.outcomes = Counter(
            "retrain_model_updates_total",
            "Retrain outcomes: promoted, rejected, failed, rolled_back",
            ["model_id", "outcome"],
            registry=registry,
        )
        self.version = Gauge("retrain_model_version_in_service", "Champion version", ["model_id"], registry=registry)
        self.last_retrain = Gauge(
            "retrain_last_retrain_timestamp_seconds",
            "When the last retrain of a model finished",
            ["model_id"],
            registry=registry,
        )
        self.buffered = Gauge("retrain_buffer_examples", "Examples buffered per model", ["model_id"], registry=registry)
        self.coalesced = Counter(
            "retrain_retrain_events_coalesced_total",
            "Retrain events merged into a pending one",
            ["model_id"],
            registry=registry,
        )


def loop_stages(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "retrain_loop_stage_seconds",
        "Seconds a retrain spent in each stage from detection to the new version serving: "
        + "; ".join(f"{name}: {what}" for name, what in LOOP_STAGES.items()),
        ["stage"],
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
        registry=registry,
    )


class ScorerMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__("scorer", registry)
        self.stages = loop_stages(registry)
        self.predictions = Counter(
            "retrain_predictions_total",
            "Predictions published, per model (the fallback's included)",
            ["model_id"],
            registry=registry,
        )
        self.model_version = Gauge(
            "retrain_scorer_model_version",
            "Model version the scorer serves (0: no promoted version yet, the fallback answers)",
            ["model_id"],
            registry=registry,
        )
        self.mistyped_features = Counter(
            "retrain_scorer_mistyped_features_total",
            "Feature values scored as missing because their type is not the one the version was trained on "
            "(a string where it saw numbers, or a number where it saw categories)",
            ["model_id", "feature"],
            registry=registry,
        )
        self.swaps = Counter(
            "retrain_model_swaps_total", "Hot swaps to another promoted version", ["model_id"], registry=registry
        )
        self.load_failures = Counter(
            "retrain_model_load_failures_total",
            "Versions that could not be loaded (refused by verification, missing, unreadable); the old one stays",
            ["model_id"],
            registry=registry,
        )
        self.loaded_models = Gauge(
            "retrain_scorer_loaded_models",
            "Models loaded (not the fallback's), at most the configured maximum",
            registry=registry,
        )
        self.unloads = Counter(
            "retrain_model_unloads_total",
            "Models unloaded as the least recently used beyond the maximum (loaded again on their next request)",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "retrain_scoring_batch_seconds",
            "Time to score one poll batch of requests (every model's predict, and the events built)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """Serve ``/metrics`` on ``host:port`` (loopback by default) from a daemon thread."""
    start_http_server(port, addr=host, registry=registry)
