"""The confluent-kafka adapter: the seam's consumer and producer over librdkafka (confluent-kafka 2.x).

Same contract as :mod:`retrain.kafka.kafka_python`; librdkafka's differences are bridged here, each in a line:
its default partitioner (CRC32) and assignor (range,roundrobin), its default isolation level (read_committed),
rebalance callbacks that run inside ``consume()`` (on the caller's thread, so no hand-over is needed), a
``seek()`` that refuses a partition whose fetch has not started yet, and a ``position()`` that knows nothing
before the first record. Topic administration stays on kafka-python (:func:`retrain.kafka.make_admin`).

:func:`producer` and :func:`consumer` are what :mod:`retrain.kafka` calls; the modules: error translation
(``failures``), record conversion (``records``), librdkafka properties (``configuration``), the consumer
(``consuming``), the transactional producer (``producing``) and the factories (``factories``).
"""

from __future__ import annotations

import confluent_kafka  # the library too, as ``confluent.confluent_kafka`` (the unit tests patch it there)

from retrain.kafka.confluent.configuration import client_config, consumer_config, producer_config
from retrain.kafka.confluent.consuming import ConfluentConsumer
from retrain.kafka.confluent.factories import consumer, producer, raw_consume_seconds
from retrain.kafka.confluent.failures import failure, translated
from retrain.kafka.confluent.producing import OVERDUE_GRACE_S, TRANSACTION_TIMEOUT_S, ConfluentProducer
from retrain.kafka.confluent.records import to_record

__all__ = [
    "OVERDUE_GRACE_S",
    "TRANSACTION_TIMEOUT_S",
    "ConfluentConsumer",
    "ConfluentProducer",
    "client_config",
    "confluent_kafka",
    "consumer",
    "consumer_config",
    "failure",
    "producer",
    "producer_config",
    "raw_consume_seconds",
    "to_record",
    "translated",
]
