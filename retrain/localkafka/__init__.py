"""The project's own Apache Kafka broker for development, tests and the demo (no Docker needed)."""

from retrain.localkafka.broker import BrokerError, BrokerStatus, LocalBroker, is_port_open, metadata_ok
from retrain.localkafka.jars import BrokerToolingError, KafkaDistribution

__all__ = [
    "BrokerError",
    "BrokerStatus",
    "BrokerToolingError",
    "KafkaDistribution",
    "LocalBroker",
    "is_port_open",
    "metadata_ok",
]
