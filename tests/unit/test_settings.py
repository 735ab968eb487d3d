"""Settings: flat RETRAIN_* variables per concern, credentials passed through but never shown."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from retrain.cli import describe_settings_error
from retrain.settings import BrokerSettings, KafkaSettings, MetricsSettings, TopicSettings, load_settings
from tests.conftest import REPO_ROOT

PASSWORD = "s3cr3t-pa55word-xyzzy"
SASL_ENV = {
    "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093, kafka-2:9093",
    "RETRAIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RETRAIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "RETRAIN_KAFKA_SASL_USERNAME": "retrain-svc",
    "RETRAIN_KAFKA_SASL_PASSWORD": PASSWORD,
    "RETRAIN_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
}


def test_defaults_point_at_a_local_broker_and_loopback_metrics():
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.kafka.client_config()["security_protocol"] == "PLAINTEXT"
    assert settings.topics.names() == {
        "scoring_requests": "scoring-requests",
        "predictions": "predictions",
        "labels": "labels",
        "labeled_examples": "labeled-examples",
        "retrain_events": "retrain-events",
        "model_updates": "model-updates",
        "dead_letters": "dead-letters",
        "detector_state": "detector-state",
        "detector_changelog": "detector-changelog",
    }
    assert settings.broker.host == "127.0.0.1" and settings.broker.port == 9092
    assert settings.metrics.host == "127.0.0.1"
    ports = [settings.metrics.detector_port, settings.metrics.trainer_port, settings.metrics.scorer_port]
    assert len(set(ports)) == 3


def test_each_concern_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RETRAIN_KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("RETRAIN_TOPIC_LABELS", "ground-truth")
    monkeypatch.setenv("RETRAIN_TOPIC_STREAM_PARTITIONS", "12")
    monkeypatch.setenv("RETRAIN_BROKER_PORT", "19999")
    monkeypatch.setenv("RETRAIN_METRICS_TRAINER_PORT", "9999")

    settings = load_settings()

    assert settings.kafka.bootstrap_list == ["broker:29092"]
    assert settings.topics.labels == "ground-truth" and settings.topics.stream_partitions == 12
    assert settings.broker.port == 19999 and settings.broker.resolved_controller_port == 20000
    assert settings.metrics.trainer_port == 9999


def test_sasl_and_tls_pass_through_to_kafka_python(monkeypatch: pytest.MonkeyPatch):
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)

    config = KafkaSettings().client_config()

    assert config["bootstrap_servers"] == ["kafka-1:9093", "kafka-2:9093"]
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "retrain-svc"
    assert config["sasl_plain_password"] == PASSWORD
    assert config["ssl_cafile"] == "/etc/kafka/ca.pem"
    assert config["ssl_check_hostname"] is True


def test_the_password_never_shows_in_repr_str_dump_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("retrain.test").info("settings: %s / %r", settings, settings.kafka)

    shown = [repr(settings), str(settings), json.dumps(settings.model_dump(mode="json")), caplog.text]
    for text in shown:
        assert PASSWORD not in text
    assert "**********" in caplog.text


def test_config_command_masks_the_password():
    result = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "config"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **SASL_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert PASSWORD not in result.stdout + result.stderr
    assert json.loads(result.stdout)["kafka"]["sasl_password"] == "**********"


def test_incomplete_sasl_is_refused_without_echoing_the_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RETRAIN_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RETRAIN_KAFKA_SASL_PASSWORD", PASSWORD)
    with pytest.raises(ValidationError) as raised:
        KafkaSettings()
    message = describe_settings_error(raised.value)
    assert "needs RETRAIN_KAFKA_SASL_MECHANISM, RETRAIN_KAFKA_SASL_USERNAME to be set" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        (KafkaSettings, "RETRAIN_KAFKA_SECURITY_PROTOCOL", "TLS"),
        (KafkaSettings, "RETRAIN_KAFKA_SASL_MECHANISM", "GSSAPI"),
        (TopicSettings, "RETRAIN_TOPIC_STREAM_PARTITIONS", "0"),
        (TopicSettings, "RETRAIN_TOPIC_LABELS", "predictions"),
        (BrokerSettings, "RETRAIN_BROKER_KAFKA_VERSION", "3.9.0"),
        (BrokerSettings, "RETRAIN_BROKER_PORT", "70000"),
        (MetricsSettings, "RETRAIN_METRICS_SCORER_PORT", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, cls: type, variable: str, value: str):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        cls()


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.kafka.bootstrap_servers = "elsewhere:9092"  # type: ignore[misc]


def test_the_join_state_defaults_to_a_store_on_disk_with_week_long_predictions(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RETRAIN_STATE_DIR", raising=False)  # the tests' own
    settings = load_settings()
    assert settings.detector.state_store == "rocksdb"
    assert settings.detector.state_dir == Path(".cache/state")
    assert settings.detector.prediction_ttl_s == 7 * 86_400
    assert settings.detector.pending_cap == 50_000_000
    monkeypatch.setenv("RETRAIN_STATE_DIR", "/srv/state")
    monkeypatch.setenv("RETRAIN_DETECTOR_STATE_STORE", "memory")
    settings = load_settings()
    assert settings.detector.state_dir == Path("/srv/state") and settings.detector.pending_cap == 1_000_000
    monkeypatch.setenv("RETRAIN_DETECTOR_MAX_PENDING", "25")
    monkeypatch.delenv("RETRAIN_STATE_DIR")
    monkeypatch.setenv("RETRAIN_DETECTOR_STATE_DIR", "/var/lib/retrain/state")  # the prefixed name works too
    settings = load_settings()
    assert settings.detector.pending_cap == 25 and settings.detector.state_dir == Path("/var/lib/retrain/state")
