"""The local broker's pure parts: its configuration, its cluster id, and what it says when tools are missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retrain.localkafka import BrokerToolingError, KafkaDistribution, LocalBroker
from retrain.localkafka.broker import new_cluster_id
from retrain.localkafka.jars import check_java, ensure_distribution
from retrain.settings import BrokerSettings


def read_properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_server_properties_for_one_combined_node_on_loopback(tmp_path: Path):
    broker = LocalBroker(BrokerSettings(port=19500, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data"))
    broker._write_config()

    properties = read_properties(broker.config_file)

    assert properties["process.roles"] == "broker,controller"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19500"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:19501"
    assert properties["log.dirs"] == str((tmp_path / "data" / "kraft").resolve())
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert properties[key] == "1", key
    assert properties["auto.create.topics.enable"] == "false"
    assert "${sys:kafka.logs.dir}/server.log" in broker.log4j_file.read_text()


def test_data_dir_defaults_per_port_inside_the_cache():
    settings = BrokerSettings(port=9200, cache_dir=Path(".cache/kafka"))
    assert settings.resolved_data_dir == Path(".cache/kafka/data-9200")
    assert settings.bootstrap == "127.0.0.1:9200"


def test_cluster_ids_look_like_kafkas():
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id) for cluster_id in ids)


def test_missing_java_points_at_docker_compose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java, no mvn
    with pytest.raises(BrokerToolingError, match=r"Java 17 or newer.*docker compose up -d kafka"):
        check_java()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake_java = tmp_path / "java"
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerToolingError, match=r"needs Java 17 or newer; `java` is version 11"):
        check_java()


def test_missing_maven_with_a_cold_cache_points_at_docker_compose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    distribution = KafkaDistribution("4.1.1", "2.13", tmp_path / "cache")
    with pytest.raises(BrokerToolingError, match=r"Maven \(`mvn`\).*docker compose"):
        ensure_distribution(distribution)


def test_a_warm_cache_needs_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no mvn: it must not be looked for
    distribution = KafkaDistribution("4.1.1", "2.13", tmp_path / "cache")
    distribution.libs.mkdir(parents=True)
    (distribution.home / ".complete").write_text("4.1.1\n")
    assert ensure_distribution(distribution) is False
    assert distribution.classpath.endswith("libs/*")
