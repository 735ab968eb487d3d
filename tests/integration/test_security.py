"""TLS and SASL end to end: a broker listener with SASL_SSL (PLAIN), the detector through it, no secret in its logs.

The test set-up makes a key pair and a self-signed certificate for 127.0.0.1 with the JDK's keytool, starts a
broker of its own with a SASL_SSL listener next to its PLAINTEXT one, and talks to it only through that
listener: creating the topics, producing, the detector process, reading its output. A wrong password is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from consumers.decoding import decode_record
from retrain.clients import make_admin, make_producer
from retrain.localkafka import LocalBroker
from retrain.settings import BrokerSettings, KafkaSettings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics
from schemas import LabeledExample, encode
from tests.conftest import REPO_ROOT
from tests.integration.conftest import TEST_BROKER_PORT
from tests.integration.streams import sea_model, sea_stream
from tests.integration.test_detector import read_all
from tests.integration.test_detector_process import free_port, joined, scrape

pytestmark = pytest.mark.kafka

STORE_PASSWORD = "keystore-pass-4c1d"
PASSWORD = "s3cret-sasl-password-7f2e"  # the client's; must never appear in a log
N = 2_000


def certificate(directory: Path) -> tuple[Path, Path]:
    """A PKCS12 keystore for the broker and its certificate (PEM) for the clients to trust."""
    keystore, pem = directory / "broker.p12", directory / "broker.pem"
    common = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", STORE_PASSWORD]
    key_pair = ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2"]
    subject = ["-dname", "CN=localhost", "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-keypass", STORE_PASSWORD]
    subprocess.run(
        ["keytool", *key_pair, *subject, *common],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["keytool", "-exportcert", "-alias", "broker", "-rfc", "-file", str(pem), *common],
        check=True,
        capture_output=True,
    )
    return keystore, pem


@pytest.fixture
def secure_broker(tmp_path: Path):
    keystore, pem = certificate(tmp_path)
    port, secure_port = TEST_BROKER_PORT + 60, TEST_BROKER_PORT + 62
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="admin" password="admin-pass" user_admin="admin-pass" user_retrain="{PASSWORD}";'
    )
    broker = LocalBroker(
        BrokerSettings(
            port=port,
            cache_dir=REPO_ROOT / ".cache" / "kafka",
            data_dir=REPO_ROOT / ".cache" / "kafka" / f"test-data-{port}",
        ),
        extra_listeners={"SECURE": ("SASL_SSL", secure_port)},
        extra_properties={
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.secure.plain.sasl.jaas.config": jaas,
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.password": STORE_PASSWORD,
            "ssl.key.password": STORE_PASSWORD,
        },
    )
    broker.start(fresh=True)
    try:
        yield f"127.0.0.1:{secure_port}", pem
    finally:
        broker.stop()


def secure_settings(bootstrap: str, cafile: Path, password: str = PASSWORD) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="retrain",
        sasl_password=password,
        ssl_cafile=cafile,
    )


def test_the_detector_works_over_sasl_ssl_and_never_logs_the_password(
    secure_broker: tuple[str, Path], topic_settings: TopicSettings, unique: str
):
    bootstrap, cafile = secure_broker
    kafka = secure_settings(bootstrap, cafile)
    with pytest.raises(KafkaError):  # SASL is enforced: the wrong password gets nowhere
        make_admin(secure_settings(bootstrap, cafile, password="wrong-password"), request_timeout_ms=5_000)

    admin = make_admin(kafka)
    try:
        assert ensure_topics(admin, pipeline_topics(topic_settings)).ok
    finally:
        admin.close()
    stream = sea_stream(sea_model(), n=N, drift_at=None, model_id="secure")
    producer = make_producer(kafka)
    for item in stream:
        producer.send(topic_settings.predictions, key=b"secure", value=encode(item.prediction))
        producer.send(topic_settings.labels, key=b"secure", value=encode(item.label))
    producer.flush()
    producer.close()

    port = free_port()
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RETRAIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RETRAIN_KAFKA_SASL_MECHANISM": "PLAIN",
        "RETRAIN_KAFKA_SASL_USERNAME": "retrain",
        "RETRAIN_KAFKA_SASL_PASSWORD": PASSWORD,
        "RETRAIN_KAFKA_SSL_CAFILE": str(cafile),
        "RETRAIN_DETECTOR_GROUP_ID": f"detector-{unique}",
        "RETRAIN_METRICS_DETECTOR_PORT": str(port),
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in topic_settings.names().items()},
        "RETRAIN_TOPIC_STREAM_PARTITIONS": str(topic_settings.stream_partitions),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "retrain.cli", "detector"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, count = time.monotonic() + 90, 0.0
        while time.monotonic() < deadline and count < N:
            time.sleep(0.5)
            assert process.poll() is None, "the detector exited"
            try:
                count = joined(scrape(port))
            except OSError:
                continue
        if count != N:
            process.kill()
            tail = process.stdout.read().decode(errors="replace")[-6_000:] if process.stdout else ""
            raise AssertionError(f"joined {count} of {N} over SASL_SSL:\n{tail}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert "detector: reading" in output
    assert PASSWORD not in output and STORE_PASSWORD not in output

    examples = [decode_record(r, LabeledExample) for r in read_all(kafka, topic_settings.labeled_examples, 3)]
    assert sorted(e.prediction_id for e in examples) == sorted(s.prediction.prediction_id for s in stream)

    shown = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "config"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr
