"""Services as processes of the test (start, kill -9, SIGTERM, their output and /metrics) and the waits on them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from kafka import TopicPartition

from retrain.consumers.decoding import decode_record
from retrain.schemas import (
    LabeledExample,
)
from retrain.settings import KafkaSettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_consumer, read_all, written


class Detector:
    """``retrain detector`` (or another service: ``command``) as a process of the test, started again after a kill."""

    def __init__(
        self, kafka: KafkaSettings, topics: TopicSettings, group: str, command: str = "detector", **env: str
    ) -> None:
        self.command = command
        self.env = {
            **os.environ,
            "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "RETRAIN_KAFKA_CLIENT": kafka.client,
            "RETRAIN_DETECTOR_GROUP_ID": group,
            "RETRAIN_METRICS_DETECTOR_PORT": str(free_port()),
            **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in topics.names().items()},
            "RETRAIN_TOPIC_STREAM_PARTITIONS": str(topics.stream_partitions),
            "RETRAIN_REGISTRY_HMAC_KEY": HARNESS_KEY,
            "RETRAIN_DETECTOR_COOLDOWN_S": str(10**9),  # event time runs 1 s per example here
            # RETRAIN_TEST_SERVICE_LOG_LEVEL=DEBUG (or INFO) makes the services say more, for a stall's report.
            "RETRAIN_LOG_LEVEL": os.environ.get("RETRAIN_TEST_SERVICE_LOG_LEVEL", "WARNING"),
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.outputs: list[str] = []
        # The output goes to a file, not a pipe: a pipe nobody reads fills up (64 KiB of kafka-python's connection
        # errors while a broker is away) and then blocks the process in its next log call.
        # Opened for appending: reading it never moves where the process writes.
        self._log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 (lives as long as this object)

    def start(self, preexec_fn: Callable[[], None] | None = None) -> None:
        """``preexec_fn``: run in the child before the service starts (e.g. resource limits for this run only)."""
        self._log.seek(0)
        self._log.truncate()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retrain.cli", self.command],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )

    def output(self) -> str:
        """What the running (or last) process has printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _collect(self) -> None:
        assert self.process is not None
        self.outputs.append(self.output())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_if_running(self) -> None:
        """For a test's ``finally``: no process outlives its test."""
        if self.running:
            self.process.kill()

    @property
    def metrics_port(self) -> int:
        return int(self.env[f"RETRAIN_METRICS_{self.command.upper()}_PORT"])

    def joined(self) -> float:
        """Joins this process has made, from its /metrics (0 when it is not serving yet)."""
        try:
            return joined(scrape(self.metrics_port))
        except OSError:
            return 0.0

    def recoveries(self) -> dict[str, float]:
        """Its in-process recoveries so far, by the error's class name (``retrain_kafka_recoveries_total``)."""
        found = re.findall(
            r'^retrain_kafka_recoveries_total\{.*?error="([^"]+)".*?\} (\S+)$', scrape(self.metrics_port), re.M
        )
        return {error: float(count) for error, count in found}

    def kill(self) -> None:
        assert self.running, "the detector died before its kill"
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL
        self._collect()

    def stuck_report(self, tail: int = 60) -> str:
        """Its threads' stacks (SIGUSR1) and the end of its log: where a process that makes no progress is."""
        if self.running:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
        return "\n".join(self.output().splitlines()[-tail:])

    def terminate(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGUSR1)  # its threads' stacks into its output: where it is stuck
                time.sleep(1)
                self.process.kill()
                self.process.wait()
        self._collect()
        return self.process.returncode


def wait_all_joined(
    reading: KafkaSettings, topics: TopicSettings, total: int, alive: list[Detector], timeout_s: float = 240
) -> Counter[str]:
    """How many times each prediction id was joined, once all ``total`` are in labeled-examples."""
    partitions = [TopicPartition(topics.labeled_examples, p) for p in range(topics.stream_partitions)]
    watcher = make_consumer(reading, None)
    ids: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(ids) < total:
            if time.monotonic() >= deadline:
                where = "\n".join(f"--- {d.command}:\n{d.stuck_report()}" for d in alive if d.running)
                raise AssertionError(
                    f"only {len(ids)} of {total} predictions joined ({written(watcher, partitions)} written):\n{where}"
                )
            exited = [d for d in alive if d.process is None or d.process.poll() is not None]
            if exited:
                output = exited[0].output()
                raise AssertionError(f"retrain {exited[0].command} exited:\n{output[-3_000:]}")
            time.sleep(2)
            if written(watcher, partitions) >= total:  # duplicates make the topic longer than the stream
                records = read_all(reading, topics.labeled_examples, topics.stream_partitions)
                ids = Counter(decode_record(r, LabeledExample).prediction_id for r in records)
    finally:
        watcher.close()
    return ids


# The HMAC key the harness gives every service process (it signs snapshots and model artifacts).
HARNESS_KEY = "a test key that signs the snapshots, 32+ bytes"
TRAINER_KEY = "trainer-crash-test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def joined(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('retrain_joins_total{outcome="joined"}'):
            return float(line.split()[-1])
    return 0.0


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return None


class Trainer:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, group: str, registry: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "RETRAIN_KAFKA_CLIENT": kafka.client,
            "RETRAIN_KAFKA_PROCESSING_GUARANTEE": kafka.processing_guarantee,
            "RETRAIN_TRAINER_GROUP_ID": group,
            "RETRAIN_METRICS_TRAINER_PORT": str(self.port),
            **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in topics.names().items()},
            "RETRAIN_TOPIC_STREAM_PARTITIONS": str(topics.stream_partitions),
            "RETRAIN_REGISTRY_PATH": str(registry),
            "RETRAIN_REGISTRY_HMAC_KEY": TRAINER_KEY,
            # A fit of about 10 s on this machine: long enough to be killed in the middle of it.
            "RETRAIN_TRAINER_ESTIMATOR": "sklearn.ensemble.RandomForestClassifier",
            "RETRAIN_TRAINER_ESTIMATOR_PARAMS": '{"n_estimators": 2000, "random_state": 0}',
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retrain.cli", "trainer"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def metric(self, name: str) -> float | None:
        try:
            return sample(scrape(self.port), name)
        except OSError:
            return None

    def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.read().decode(errors="replace")


def served(port: int, model_id: str) -> float:
    try:
        return sample(scrape(port), f'retrain_scorer_model_version{{model_id="{model_id}"}}') or 0.0
    except OSError:
        return 0.0


def wait_for(condition, what: str, services: list[Detector], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for service in services:
            assert service.running, f"{service.command} exited while waiting for {what}:\n{service.output()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n".join(
            f"--- {s.command}\n{s.output()[-2000:]}" for s in services
        )
        time.sleep(0.5)
