"""What the benchmarks share: a broker of their own (or one given), fresh pipeline topics, where a key goes, lag."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2  # the Java client's hash, which both adapters partition with

from retrain.kafka import TopicPartition, make_admin, make_consumer
from retrain.kafka.kafka_python import raw_admin
from retrain.localkafka import LocalBroker
from retrain.settings import BrokerSettings, KafkaSettings, RegistrySettings, Settings, TopicSettings, TrainerSettings
from retrain.topics import ensure_topics, pipeline_topics


def _local_broker(port: int) -> LocalBroker:
    return LocalBroker(BrokerSettings(port=port, data_dir=f".cache/kafka/bench-{port}"))


@contextmanager
def benchmark_kafka(bootstrap: str | None, port: int) -> Iterator[KafkaSettings]:
    """``bootstrap`` if given; otherwise the project's broker on ``port``, with fresh data, stopped at the end."""
    if bootstrap is not None:
        yield KafkaSettings(bootstrap_servers=bootstrap)
        return
    broker = _local_broker(port)
    broker.start(fresh=True)
    try:
        yield KafkaSettings(bootstrap_servers=broker.bootstrap)
    finally:
        broker.stop()


def fresh_topics(kafka: KafkaSettings, stream_partitions: int | None = None) -> TopicSettings:
    """Every pipeline topic under a new random suffix, created (the streams with ``stream_partitions`` if given)."""
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"{name}-{suffix}" for role, name in TopicSettings().names().items()}
    sizes = {} if stream_partitions is None else {"stream_partitions": stream_partitions}
    topics = TopicSettings(**names, **sizes)
    admin = make_admin(kafka)
    try:
        ensure_topics(admin, pipeline_topics(topics))
    finally:
        admin.close()
    return topics


def trainer_settings(kafka: KafkaSettings, topics: TopicSettings, workdir: Path, **trainer: Any) -> Settings:
    """Settings of a trainer over ``topics``: its own group and registry (under ``workdir``), ``trainer`` options."""
    suffix = topics.predictions.rsplit("-", 1)[-1]
    return Settings(
        kafka=kafka,
        topics=topics,
        broker=BrokerSettings(),
        trainer=TrainerSettings(group_id=f"trainer-{suffix}", **trainer),
        registry=RegistrySettings(path=workdir / suffix, hmac_key="b" * 40),
    )


def broker_pid(port: int) -> int | None:
    """The pid of the broker :func:`benchmark_kafka` started on ``port`` (None for a broker given by address)."""
    return _local_broker(port).running_pid()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to under both adapters: the Java client's murmur2 partitioning."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def balanced_model_ids(per_partition: int, partitions: int, prefix: str = "m") -> list[str]:
    """Model ids such that every partition is the home of exactly ``per_partition`` of them."""
    homes: dict[int, list[str]] = {p: [] for p in range(partitions)}
    candidate = 0
    while any(len(ids) < per_partition for ids in homes.values()):
        model_id = f"{prefix}{candidate}"
        home = homes[partition_of(model_id.encode(), partitions)]
        if len(home) < per_partition:
            home.append(model_id)
        candidate += 1
    return [model_id for p in range(partitions) for model_id in homes[p]]


class GroupWatch:
    """Consumer groups seen from outside: their members' assignments, the topics' ends, committed lag."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.admin = raw_admin(kafka)
        self.consumer = make_consumer(kafka, None)  # group-less: only asks for end offsets

    def assigned(self, group: str) -> list[int]:
        """Partitions assigned to each member, when the group is Stable (empty otherwise)."""
        try:
            described = self.admin.describe_groups([group])[group]
        except KafkaError:  # e.g. no coordinator yet: a fresh broker creates __consumer_offsets on the first join
            return []
        if described["group_state"] != "Stable":
            return []
        return [
            sum(len(topic["partitions"]) for topic in member["member_assignment"]["assigned_partitions"])
            for member in described["members"]
        ]

    def ends(self, topics: Iterable[str], partitions: int) -> int:
        """The end offsets of ``topics``, summed: every record written to them so far."""
        wanted = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        return sum(self.consumer.end_offsets(wanted).values())

    def committed_lag(self, group: str, topics: Iterable[str], partitions: int) -> int:
        """Records of ``topics`` past the group's committed offsets (all of a partition with no commit yet)."""
        wanted = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        ends = self.consumer.end_offsets(wanted)
        committed = {
            TopicPartition(tp.topic, tp.partition): meta.offset
            for tp, meta in self.admin.list_group_offsets({group: None}).get(group, {}).items()
        }
        return sum(max(0, ends[tp] - max(0, committed.get(tp, 0))) for tp in wanted)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()
