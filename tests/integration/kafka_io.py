"""kafka-python's own clients for the tests' side of a conversation: writing inputs and reading what the services
wrote. An independent reference client, whichever client (RETRAIN_KAFKA_CLIENT) the services under test use."""

from retrain.kafka.kafka_python import raw_admin as make_admin
from retrain.kafka.kafka_python import raw_consumer as make_consumer
from retrain.kafka.kafka_python import raw_producer as make_producer

__all__ = ["make_admin", "make_consumer", "make_producer"]


def topic_admin(admin):
    """The seam's admin over a raw kafka-python admin client (what ``retrain.topics.ensure_topics`` takes)."""
    from retrain.kafka.kafka_python import KafkaPythonAdmin

    return KafkaPythonAdmin(admin)


def seam_producer(producer):
    """The seam's producer over a raw kafka-python producer (what ``EventPublisher`` takes)."""
    from retrain.kafka.kafka_python import KafkaPythonProducer

    return KafkaPythonProducer(producer)
