"""Benchmark: records per second read by each seam consumer versus the raw clients, one topic, one run.

N records of about 150 bytes (keyed, 6 partitions) are written once; then each reader reads them all from the
beginning, group-less, touching each value: raw ``confluent_kafka.Consumer.consume``, the confluent-kafka seam
consumer, the kafka-python seam consumer and a raw ``KafkaConsumer.poll``. Usage:

    .venv/bin/python -m bench.consume_rate [--records 100000] [--bootstrap 127.0.0.1:9092] [--rounds 1]

Without --bootstrap it starts the project's broker on 127.0.0.1:19393 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

import confluent_kafka
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from bench.kafka import benchmark_kafka
from retrain.kafka import TopicPartition, make_admin, make_consumer, make_producer
from retrain.settings import KafkaSettings

PARTITIONS = 6
BATCH = 1_000


def write(kafka: KafkaSettings, topic: str, count: int) -> None:
    producer = make_producer(kafka.model_copy(update={"client": "confluent-kafka"}), linger_ms=20)
    filler = b"x" * 120
    for i in range(count):
        producer.send(topic, b"model-%d" % (i % 500), b"%08d|" % i + filler)
    producer.flush(120)
    producer.close(10)


def seam(kafka: KafkaSettings, client: str, topic: str, count: int) -> float:
    consumer = make_consumer(kafka.model_copy(update={"client": client}), None, max_poll_records=BATCH)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(partitions)
    read = size = 0
    start = time.perf_counter()
    while read < count:
        for record in consumer.poll(1.0, BATCH):
            size += len(record.value)
            read += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return read / elapsed


def raw_confluent(kafka: KafkaSettings, topic: str, count: int) -> float:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(6)])
    read = size = 0
    start = time.perf_counter()
    while read < count:
        for message in consumer.consume(num_messages=BATCH, timeout=1.0):
            if message.error() is None:
                size += len(message.value())
                read += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return read / elapsed


def raw_kafka_python(kafka: KafkaSettings, topic: str, count: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_list, enable_auto_commit=False)
    partitions = [KafkaTopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    read = size = 0
    start = time.perf_counter()
    while read < count:
        for records in consumer.poll(timeout_ms=1000, max_records=BATCH).values():
            for record in records:
                size += len(record.value)
                read += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return read / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with benchmark_kafka(args.bootstrap, 19393) as kafka:
        topic = f"consume-rate-{uuid.uuid4().hex[:8]}"
        admin = make_admin(kafka)
        admin.create_topics({topic: (PARTITIONS, 1, {})})
        admin.close()
        write(kafka, topic, args.records)
        readers: dict[str, Callable[[], float]] = {
            "raw confluent_kafka.Consumer.consume": lambda: raw_confluent(kafka, topic, args.records),
            "seam consumer, confluent-kafka": lambda: seam(kafka, "confluent-kafka", topic, args.records),
            "seam consumer, kafka-python": lambda: seam(kafka, "kafka-python", topic, args.records),
            "raw kafka.KafkaConsumer.poll": lambda: raw_kafka_python(kafka, topic, args.records),
        }
        print(f"{args.records:,} records of ~150 bytes, {PARTITIONS} partitions, {BATCH} records per poll")
        for round_ in range(args.rounds):
            for name, read in readers.items():
                print(f"round {round_ + 1}  {name:<40} {read():>10,.0f} records/s", flush=True)


if __name__ == "__main__":
    main()
