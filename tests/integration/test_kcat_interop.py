"""Interop with a Kafka client nobody here wrote: kcat (librdkafka) produces what we read and reads what we produce."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from kafka import TopicPartition

from retrain.producers import EventPublisher
from retrain.schemas import LabelEvent, RetrainEvent, RetrainReason, TrainingWindow, decode
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import make_consumer, make_producer, seam_producer


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed: `make test` installs Debian's kcat package (apt-get install kcat)")
    return path


def run_kcat(kcat: str, bootstrap: str, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run([kcat, "-b", bootstrap, *args], input=stdin, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def test_kcat_lists_the_broker_and_the_pipeline_topics(kcat: str, bootstrap: str, created_topics: TopicSettings):
    metadata = json.loads(run_kcat(kcat, bootstrap, "-L", "-J"))

    assert [broker["name"] for broker in metadata["brokers"]] == [bootstrap.replace("localhost", "127.0.0.1")]
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in metadata["topics"]}
    for name in created_topics.names().values():
        assert name in partitions, name
    assert partitions[created_topics.predictions] == partitions[created_topics.labels] == 3


def test_label_produced_by_kcat_is_accepted_and_co_partitioned(
    kcat: str, bootstrap: str, kafka_settings: KafkaSettings, created_topics: TopicSettings
):
    label_json = json.dumps(
        {
            "schema_version": 1,
            "prediction_id": "pred-from-kcat-1",
            "model_id": "fraud-model",
            "label": 1,
            "timestamp": "2026-11-28T09:30:00+01:00",
        }
    )
    # librdkafka's default partitioner (consistent_random, CRC32) differs from the Java client's murmur2;
    # a non-Java producer must choose murmur2_random to stay co-partitioned with our predictions. (For the
    # key "fraud-model" on 3 partitions the two disagree: murmur2 gives 0, CRC32 gives 2.)
    run_kcat(
        kcat,
        bootstrap,
        "-P",
        "-t",
        created_topics.labels,
        "-k",
        "fraud-model",
        "-X",
        "topic.partitioner=murmur2_random",
        stdin=label_json.encode() + b"\n",
    )
    producer = make_producer(kafka_settings)
    try:
        prediction_partition = producer.send(created_topics.predictions, key=b"fraud-model", value=b"{}").get(30)
    finally:
        producer.close()

    consumer = make_consumer(kafka_settings, None)
    try:
        partitions = [TopicPartition(created_topics.labels, p) for p in range(created_topics.stream_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records = [r for batch in consumer.poll(timeout_ms=10_000).values() for r in batch]
    finally:
        consumer.close()

    assert len(records) == 1
    label = decode(records[0].value, LabelEvent)
    assert label == LabelEvent(
        prediction_id="pred-from-kcat-1",
        model_id="fraud-model",
        label=1,
        timestamp=datetime(2026, 11, 28, 8, 30, tzinfo=UTC),
    )
    assert records[0].partition == prediction_partition.partition


def test_event_produced_here_is_read_by_kcat(
    kcat: str, bootstrap: str, kafka_settings: KafkaSettings, created_topics: TopicSettings
):
    event = RetrainEvent(
        model_id="fraud-model",
        reason=RetrainReason.FEEDBACK,
        note="customers report wrong scores — ünïcödé survives",
        suggested_window=TrainingWindow(last_n=5_000),
    )
    producer = make_producer(kafka_settings)
    try:
        sent = EventPublisher(seam_producer(producer), created_topics).publish_and_wait(event)
    finally:
        producer.close()

    out = run_kcat(
        kcat,
        bootstrap,
        "-C",
        "-t",
        sent.topic,
        "-p",
        str(sent.partition),
        "-o",
        str(sent.offset),
        "-c",
        "1",
        "-e",
        "-J",
    )
    envelope = json.loads(out)

    assert envelope["key"] == "fraud-model"
    assert envelope["offset"] == sent.offset
    assert decode(envelope["payload"].encode(), RetrainEvent) == event
