"""The detector's tally of a poll batch's hot metrics: counted per record, handed to Prometheus once per batch."""

from __future__ import annotations

from retrain.consumers.metrics import DetectorMetrics, observe_many
from retrain.decisions.policy import ModelWatch


class BatchTally:
    """What a poll batch did to the hot metrics, handed to Prometheus once per batch (not per record)."""

    __slots__ = ("ages", "consumed", "examples", "watched")

    def __init__(self) -> None:
        self.consumed: dict[str, int] = {}  # topic -> records
        self.ages: list[float] = []  # each record's age when handled, seconds
        self.examples: dict[str, int] = {}  # model_id -> labeled examples
        self.watched: dict[str, ModelWatch] = {}  # the models with new examples: their rolling figures

    def joined(self, watch: ModelWatch) -> None:
        self.examples[watch.model_id] = self.examples.get(watch.model_id, 0) + 1
        self.watched[watch.model_id] = watch

    def report(self, metrics: DetectorMetrics, service: str) -> None:
        for topic, count in self.consumed.items():
            metrics.records_consumed.labels(service, topic).inc(count)
        observe_many(metrics.processing_latency.labels(service), self.ages)
        if self.examples:
            metrics.joins.labels("joined").inc(sum(self.examples.values()))
        for model_id, count in self.examples.items():
            metrics.labeled_examples.inc(model_id, amount=count)
        for model_id, watch in self.watched.items():
            # Both gauges exist from a model's first example (at 0 while there is no figure).
            metrics.rolling_accuracy.start(model_id)
            metrics.rolling_error.start(model_id)
            accuracy, error = watch.rolling_accuracy, watch.rolling_error
            if accuracy is not None:
                metrics.rolling_accuracy.set(model_id, accuracy)
            if error is not None:
                metrics.rolling_error.set(model_id, error)
