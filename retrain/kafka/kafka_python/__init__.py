"""The kafka-python adapter: the seam's consumer, producer and admin over kafka-python 3.

kafka-python's own quirks are worked around here and nowhere else; each workaround says why in a line.

:func:`producer`, :func:`consumer` and :func:`admin` are what :mod:`retrain.kafka` calls; the modules: error
translation (``failures``), partition conversion (``partitions``), the consumer (``consuming``), the producer
(``producing``), topic administration (``administration``), kafka-python's clients with the pipeline's defaults
(``raw_clients``) and the factories (``factories``).
"""

from __future__ import annotations

from retrain.kafka.kafka_python.administration import KafkaPythonAdmin, answers_metadata
from retrain.kafka.kafka_python.consuming import KafkaPythonConsumer
from retrain.kafka.kafka_python.factories import (
    SWITCH_INTERVAL_S,
    _longer_switch_interval,  # private, but the unit tests call it here
    admin,
    consumer,
    producer,
    raw_consume_seconds,
)
from retrain.kafka.kafka_python.failures import failure, translated
from retrain.kafka.kafka_python.producing import KafkaPythonProducer
from retrain.kafka.kafka_python.raw_clients import raw_admin, raw_consumer, raw_producer

__all__ = [
    "SWITCH_INTERVAL_S",
    "KafkaPythonAdmin",
    "KafkaPythonConsumer",
    "KafkaPythonProducer",
    "_longer_switch_interval",
    "admin",
    "answers_metadata",
    "consumer",
    "failure",
    "producer",
    "raw_admin",
    "raw_consume_seconds",
    "raw_consumer",
    "raw_producer",
    "translated",
]
