"""kafka-python's admin client: the seam's topic administration, and whether a broker answers at all."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from retrain.kafka.kafka_python.failures import translated


class KafkaPythonAdmin:
    def __init__(self, raw: KafkaAdminClient) -> None:
        self.raw = raw

    @translated
    def partition_counts(self, names: Iterable[str]) -> dict[str, int]:
        present = set(self.raw.list_topics()) & set(names)
        if not present:
            return {}
        return {topic["name"]: len(topic["partitions"]) for topic in self.raw.describe_topics(sorted(present))}

    @translated
    def create_topics(self, topics: dict[str, tuple[int, int, dict[str, str]]]) -> None:
        """Create ``{name: (partitions, replication factor, configs)}``; returns once their metadata is known."""
        self.raw.create_topics(
            {
                name: {"num_partitions": partitions, "replication_factor": replication, "configs": configs}
                for name, (partitions, replication, configs) in topics.items()
            },
            wait_for_metadata=True,
        )

    def close(self) -> None:
        self.raw.close()


def answers_metadata(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at ``bootstrap`` (PLAINTEXT) answers a metadata request with at least one broker."""
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="retrain-readiness",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(client.describe_cluster().get("brokers"))
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        client.close()
