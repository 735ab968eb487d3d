"""A real Prometheus scrapes the services while a drifting stream runs; PromQL sees what happened.

Prometheus is Debian's (installed by `make test`), started on loopback with the repository's scrape
configuration and alert rules, its targets pointed at the services' loopback metrics ports.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from retrain.consumers.wiring import run_detector, run_trainer
from retrain.producers.scored import delayed_shuffled_labels, sea_model, sea_stream
from retrain.schemas import encode
from retrain.settings import (
    BrokerSettings,
    DetectorSettings,
    KafkaSettings,
    MetricsSettings,
    RegistrySettings,
    Settings,
    TopicSettings,
    TrainerSettings,
)
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_producer
from tests.helpers.running import RunningService


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    def __init__(self, workdir: Path, targets: dict[str, int]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: `make test` installs Debian's prometheus package")
        config = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
        for job in config["scrape_configs"]:  # the repository's jobs, pointed at loopback
            job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        shutil.copy(REPO_ROOT / "prometheus" / "alerts.yml", workdir / "alerts.yml")
        self.port = free_port()
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait(lambda: self.query("vector(1)") == [1.0], "Prometheus to answer")

    def query(self, promql: str) -> list[float]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except OSError:
            return []
        return [float(item["value"][1]) for item in body["data"]["result"]]

    def raw(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]

    def wait(self, condition, what: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"Prometheus exited with {self.process.returncode}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_for(self, promql: str, expected: list[float], timeout_s: float = 90.0) -> None:
        last: list[float] = []

        def matches() -> bool:
            nonlocal last
            last = self.query(promql)
            return last == expected

        try:
            self.wait(matches, promql, timeout_s)
        except AssertionError as error:
            updates = self.raw("retrain_model_updates_total > 0")
            raise AssertionError(f"{promql} = {last}, expected {expected}; model updates: {updates}") from error

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def ports() -> dict[str, int]:
    return {"detector": free_port(), "trainer": free_port(), "scorer": free_port()}


@pytest.fixture
def prometheus(tmp_path: Path, ports: dict[str, int]) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, ports)
    yield server
    server.stop()


def test_prometheus_sees_the_drift_the_retrain_and_the_lag_drain(
    prometheus: Prometheus, ports, kafka_settings: KafkaSettings, created_topics: TopicSettings, unique, tmp_path
):
    settings = Settings(
        kafka=kafka_settings,
        topics=created_topics,
        broker=BrokerSettings(),
        metrics=MetricsSettings(
            detector_port=ports["detector"], trainer_port=ports["trainer"], scorer_port=ports["scorer"]
        ),
        # One fit per episode (3,000 examples after the change), so that exact counts can be asserted.
        detector=DetectorSettings(
            group_id=f"detector-{unique}", relative_drop=None, refit_first=3_000, refit_until=3_000
        ),
        trainer=TrainerSettings(group_id=f"trainer-{unique}", estimator_params='{"max_iter": 20}'),
        registry=RegistrySettings(path=tmp_path / "models", hmac_key="p" * 40),
    )
    detector = RunningService(lambda s, registry, serve: run_detector(s, registry=registry, serve=True), settings)
    trainer = RunningService(lambda s, registry, serve: run_trainer(s, registry=registry, serve=True), settings)
    try:
        prometheus.wait_for('up{job="detector"}', [1.0])
        prometheus.wait_for('up{job="trainer"}', [1.0])
        detector.wait_assigned()
        trainer.wait_assigned()
        # The stream starts once Prometheus scrapes the services, as it would in production.
        stream = sea_stream(sea_model(), n=12_000, drift_at=6_000, model_id="sea")
        producer = make_producer(kafka_settings, linger_ms=20)
        for item in stream:
            producer.send(created_topics.predictions, key=b"sea", value=encode(item.prediction))
        for label in delayed_shuffled_labels(stream, 200):
            producer.send(created_topics.labels, key=b"sea", value=encode(label))
        producer.flush()
        producer.close()
        prometheus.wait_for('retrain_labeled_examples_total{model_id="sea"}', [12_000.0])
        prometheus.wait_for('sum(retrain_retrain_events_total{model_id="sea", reason="drift"})', [1.0])
        prometheus.wait_for('retrain_model_version_in_service{model_id="sea"}', [1.0])
        prometheus.wait_for('sum(retrain_model_updates_total{model_id="sea", outcome="promoted"})', [1.0])
        prometheus.wait_for('sum(retrain_consumer_lag{service="detector"})', [0.0])
        prometheus.wait_for('sum(retrain_consumer_lag{service="trainer"})', [0.0])
        prometheus.wait_for('count(ALERTS{alertname="DriftDetected", model_id="sea"})', [1.0])
        assert prometheus.query('retrain_rolling_accuracy{model_id="sea"}')[0] > 0.5
    finally:
        detector.stop()
        trainer.stop()
