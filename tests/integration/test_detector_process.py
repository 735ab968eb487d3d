"""`retrain detector` as a process: serves /metrics on loopback, and SIGTERM stops it with its offsets committed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from kafka import TopicPartition

from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import encode
from retrain.settings import KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_admin, make_producer
from tests.helpers.processes import free_port, joined, scrape


def test_sigterm_stops_the_detector_with_offsets_committed(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str
):
    stream = sea_stream(sea_model(), n=2_000, drift_at=None, model_id="proc")
    producer = make_producer(kafka_settings)
    for item in stream:
        producer.send(created_topics.predictions, key=b"proc", value=encode(item.prediction))
        producer.send(created_topics.labels, key=b"proc", value=encode(item.label))
    producer.flush()
    producer.close()

    port, group = free_port(), f"detector-{unique}"
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        "RETRAIN_DETECTOR_GROUP_ID": group,
        "RETRAIN_METRICS_DETECTOR_PORT": str(port),
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in created_topics.names().items()},
        "RETRAIN_TOPIC_STREAM_PARTITIONS": str(created_topics.stream_partitions),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "retrain.cli", "detector"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        count = 0.0
        while time.monotonic() < deadline and count < 2_000:
            time.sleep(0.5)
            try:
                count = joined(scrape(port))
            except OSError:
                continue
        assert count == 2_000, f"joined {count} of 2,000"
        with socket.socket() as probe:  # bound to loopback only
            assert probe.connect_ex(("127.0.0.1", port)) == 0

        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - stopped_at < 10
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert "detector: reading" in output, output

    admin = make_admin(kafka_settings)
    try:
        committed = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    partition = next(tp.partition for tp in committed if tp.topic == created_topics.labels and committed[tp].offset > 0)
    # Every record was joined, so nothing is pending: the commit reached the end of both topics.
    assert committed[TopicPartition(created_topics.labels, partition)].offset == 2_000
    assert committed[TopicPartition(created_topics.predictions, partition)].offset == 2_000
