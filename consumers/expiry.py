"""The detector's end-of-batch pass over its joins' waiting records: expire and evict them, dead-letter the labels
that found no prediction, and report what still waits."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from retrain.consumers.metrics import DetectorMetrics
from retrain.consumers.service import Outputs
from retrain.decisions.join import LabelJoiner
from retrain.schemas import DeadLetter
from retrain.state.join import StoredJoiner

log = logging.getLogger("retrain.consumers.detector")  # the detector's log, as the pass is part of its work


def expire_joins(
    joiners: Mapping[int, LabelJoiner | StoredJoiner],
    metrics: DetectorMetrics,
    labels_topic: str,
    service: str,
    out: Outputs,
) -> None:
    """Expire each partition's joins past their TTL, count and log evictions, dead-letter unmatched labels (as
    records of ``labels_topic``), then set the pending gauges."""
    for partition, joiner in joiners.items():
        before = joiner.stats.evicted
        expired = joiner.expire()
        metrics.joins.labels("expired_prediction").inc(len(expired.predictions))
        evicted = joiner.stats.evicted - before
        metrics.joins.labels("evicted").inc(evicted)
        if evicted:
            log.warning(
                "partition %d: %d waiting records evicted, the oldest first: the cap of %d per partition is "
                "reached (RETRAIN_DETECTOR_MAX_PENDING)",
                partition,
                evicted,
                joiner.max_pending,
            )
        for label, offset in expired.labels:
            metrics.joins.labels("unmatched_label").inc()
            out.dead_letter(
                DeadLetter.for_record(
                    topic=labels_topic,
                    partition=partition,
                    offset=offset,
                    key=label.model_id.encode(),
                    value=label.model_dump_json().encode(),
                    error=LookupError(
                        f"label for prediction {label.prediction_id} of model {label.model_id} found no "
                        f"prediction within {joiner.label_ttl_s:.0f}s"
                    ),
                    reason="unmatched_label",
                    service=service,
                    timestamp=label.timestamp,
                )
            )
    metrics.pending.labels("prediction").set(sum(j.pending_predictions for j in joiners.values()))
    metrics.pending.labels("label").set(sum(j.pending_labels for j in joiners.values()))
    for partition, joiner in joiners.items():
        metrics.pending_by_partition.labels("prediction", str(partition)).set(joiner.pending_predictions)
        metrics.pending_by_partition.labels("label", str(partition)).set(joiner.pending_labels)
