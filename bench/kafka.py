"""What the benchmarks share: a broker of their own (or one given), and a fresh set of pipeline topics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from retrain.kafka import make_admin
from retrain.localkafka import LocalBroker
from retrain.settings import BrokerSettings, KafkaSettings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics


@contextmanager
def benchmark_kafka(bootstrap: str | None, port: int) -> Iterator[KafkaSettings]:
    """``bootstrap`` if given; otherwise the project's broker on ``port``, with fresh data, stopped at the end."""
    if bootstrap is not None:
        yield KafkaSettings(bootstrap_servers=bootstrap)
        return
    broker = LocalBroker(BrokerSettings(port=port, data_dir=f".cache/kafka/bench-{port}"))
    broker.start(fresh=True)
    try:
        yield KafkaSettings(bootstrap_servers=broker.bootstrap)
    finally:
        broker.stop()


def fresh_topics(kafka: KafkaSettings) -> TopicSettings:
    """Every pipeline topic under a new random suffix, created."""
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(**{role: f"{name}-{suffix}" for role, name in TopicSettings().names().items()})
    admin = make_admin(kafka)
    try:
        ensure_topics(admin, pipeline_topics(topics))
    finally:
        admin.close()
    return topics
