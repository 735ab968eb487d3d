"""The topics the pipeline uses, and their idempotent creation.

``scoring-requests``, ``predictions``, ``labels`` and ``labeled-examples`` are co-partitioned (same partition
count, same key, ``model_id``), so one consumer owns both sides of every join. Creating topics twice is harmless;
an existing topic whose partition count breaks co-partitioning is reported as an error rather than silently used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain.kafka import TopicAlreadyExists
from retrain.settings import TopicSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    co_partitioned: bool = False


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class TopicLayoutError(RuntimeError):
    """Existing topics do not have the partition layout the pipeline needs."""


def pipeline_topics(settings: TopicSettings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes, with its partition count and configuration."""
    replication = settings.replication_factor

    def stream(name: str, **config: str) -> TopicSpec:
        return TopicSpec(name, settings.stream_partitions, replication, dict(config), co_partitioned=True)

    def control(name: str, partitions: int, **config: str) -> TopicSpec:
        return TopicSpec(name, partitions, replication, dict(config))

    return [
        stream(settings.scoring_requests),
        stream(settings.predictions),
        stream(settings.labels),
        # The trainer rebuilds its windows from here after a restart: retention is the longest window.
        stream(settings.labeled_examples, **{"retention.ms": str(settings.labeled_examples_retention_ms)}),
        # One record per partition (key: the partition number); compaction keeps the latest.
        stream(settings.detector_state, **{"cleanup.policy": "compact"}),
        # Keyed by the state store's keys, tombstones on delete: compaction keeps what a restore needs. Only closed
        # segments are compacted: 64 MiB ones (Kafka's default is 1 GiB) let it act while a store is small.
        stream(settings.detector_changelog, **{"cleanup.policy": "compact", "segment.bytes": str(64 * 1024 * 1024)}),
        control(settings.retrain_events, settings.control_partitions),
        control(settings.model_updates, settings.control_partitions),
        control(
            settings.dead_letters,
            settings.dead_letter_partitions,
            **{"retention.ms": str(settings.dead_letters_retention_ms)},
        ),
    ]


def ensure_topics(admin: Any, specs: list[TopicSpec]) -> TopicReport:
    """Create the topics that are missing; report those that exist with another partition count."""
    report = TopicReport()
    names = [spec.name for spec in specs]
    counts = admin.partition_counts(names)
    missing = [spec for spec in specs if spec.name not in counts]
    if missing:
        new_topics = {spec.name: (spec.partitions, spec.replication_factor, spec.config) for spec in missing}
        try:
            admin.create_topics(new_topics)
            report.created.extend(spec.name for spec in missing)
        except TopicAlreadyExists:
            # Another process created some of them between our look and our create: look again.
            counts = admin.partition_counts(names)
            for spec in missing:
                if spec.name not in counts:
                    admin.create_topics({spec.name: new_topics[spec.name]})
                    report.created.append(spec.name)
    for spec in specs:
        if spec.name in counts:
            report.existing.append(spec.name)
            if counts[spec.name] != spec.partitions:
                kind = "co-partitioned stream topic" if spec.co_partitioned else "topic"
                report.problems.append(
                    f"{kind} {spec.name} has {counts[spec.name]} partitions, configured {spec.partitions}"
                )
    co_partitioned = {spec.name for spec in specs if spec.co_partitioned}
    final_counts = {**{spec.name: spec.partitions for spec in specs if spec.name in report.created}, **counts}
    if len({final_counts[name] for name in co_partitioned if name in final_counts}) > 1:
        layout = ", ".join(f"{name}={final_counts[name]}" for name in sorted(co_partitioned))
        report.problems.append(
            f"co-partitioned topics must have equal partition counts ({layout}): predictions and labels of one "
            "model would land in different partitions and never meet in one detector"
        )
    return report
