"""TLS and SASL end to end: SASL_SSL (PLAIN, SCRAM-SHA-512) and mutual TLS, all three services, no secret logged.

The test set-up makes a key pair and a self-signed certificate for 127.0.0.1 with the JDK's keytool, and a client
certificate with an encrypted key with openssl; it starts a broker of its own with a SASL_SSL listener and an SSL
listener that requires a client certificate, next to its PLAINTEXT one (used only to create the SCRAM user), and
talks to it only through the secured listener under test: creating the topics, producing scoring requests and
labels, the scorer, detector and trainer processes, reading their output. A wrong password, or no client
certificate, is refused.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from retrain.consumers.decoding import decode_record
from retrain.localkafka import LocalBroker
from retrain.producers.scored import sea_model, sea_stream
from retrain.schemas import LabeledExample, ScoringRequest, encode
from retrain.settings import BrokerSettings, KafkaSettings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_admin, make_producer, read_all, topic_admin
from tests.helpers.processes import Detector, free_port, sample, scrape
from tests.integration.conftest import TEST_BROKER_PORT

pytestmark = pytest.mark.kafka

STORE_PASSWORD = "keystore-pass-4c1d"
PASSWORD = "s3cret-sasl-password-7f2e"  # the client's; must never appear in a log
KEY_PASSWORD = "client-key-pass-93ab"  # encrypts the client's private key (mutual TLS); never in a log either
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


def client_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """The client's certificate and encrypted key (PEM, made with openssl), and a truststore with it for the broker."""
    cert, key, truststore = directory / "client.pem", directory / "client.key", directory / "clients.p12"
    new_key = ["-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-passout", f"pass:{KEY_PASSWORD}"]
    subprocess.run(
        ["openssl", "req", *new_key, "-out", str(cert), "-days", "2", "-subj", "/CN=retrain-client"],
        check=True,
        capture_output=True,
    )
    store = ["-keystore", str(truststore), "-storetype", "PKCS12", "-storepass", STORE_PASSWORD]
    subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "client", "-file", str(cert), *store],
        check=True,
        capture_output=True,
    )
    return cert, key, truststore


@dataclass
class SecureBroker:
    sasl_ssl: str  # bootstrap of the SASL_SSL listener (PLAIN and SCRAM-SHA-512)
    mutual_tls: str  # bootstrap of the SSL listener that requires a client certificate
    plaintext: str  # used only to create the SCRAM user
    cafile: Path  # the broker's certificate, which the clients trust
    client_cert: Path
    client_key: Path


@pytest.fixture
def secure_broker(tmp_path: Path):
    keystore, pem = certificate(tmp_path)
    client_cert, client_key, truststore = client_certificate(tmp_path)
    port, secure_port, mtls_port = TEST_BROKER_PORT + 60, TEST_BROKER_PORT + 62, TEST_BROKER_PORT + 63
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
        extra_listeners={"SECURE": ("SASL_SSL", secure_port), "MTLS": ("SSL", mtls_port)},
        extra_properties={
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "listener.name.secure.plain.sasl.jaas.config": jaas,
            # SCRAM users live in the cluster's metadata; the test creates its user through the admin API.
            "listener.name.secure.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.password": STORE_PASSWORD,
            "ssl.key.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.mtls.ssl.truststore.location": str(truststore),
            "listener.name.mtls.ssl.truststore.type": "PKCS12",
            "listener.name.mtls.ssl.truststore.password": STORE_PASSWORD,
        },
    )
    broker.start(fresh=True)
    try:
        yield SecureBroker(
            f"127.0.0.1:{secure_port}", f"127.0.0.1:{mtls_port}", broker.bootstrap, pem, client_cert, client_key
        )
    finally:
        broker.stop()


def secure_settings(
    broker: SecureBroker, mechanism: str, password: str = PASSWORD, client: str = "kafka-python"
) -> KafkaSettings:
    """Client settings for ``mechanism``: a SASL mechanism over SASL_SSL, or "mTLS" (a client certificate)."""
    if mechanism == "mTLS":
        return KafkaSettings(
            client=client,
            bootstrap_servers=broker.mutual_tls,
            security_protocol="SSL",
            ssl_cafile=broker.cafile,
            ssl_certfile=broker.client_cert,
            ssl_keyfile=broker.client_key,
            ssl_password=KEY_PASSWORD,
        )
    return KafkaSettings(
        client=client,
        bootstrap_servers=broker.sasl_ssl,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="retrain",
        sasl_password=password,
        ssl_cafile=broker.cafile,
    )


def service_env(kafka: KafkaSettings) -> dict[str, str]:
    """The same settings as the services' environment variables."""
    env = {"RETRAIN_KAFKA_SECURITY_PROTOCOL": kafka.security_protocol, "RETRAIN_KAFKA_CLIENT": kafka.client}
    for name in ("sasl_mechanism", "sasl_username", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(kafka, name)
        if value is not None:
            env[f"RETRAIN_KAFKA_{name.upper()}"] = str(value)
    for name in ("sasl_password", "ssl_password"):
        secret = getattr(kafka, name)
        if secret is not None:
            env[f"RETRAIN_KAFKA_{name.upper()}"] = secret.get_secret_value()
    return env


def add_scram_user(plaintext_bootstrap: str) -> None:
    admin = make_admin(KafkaSettings(bootstrap_servers=plaintext_bootstrap))
    try:
        upsert = UserScramCredentialUpsertion("retrain", ScramMechanism.SCRAM_SHA_512, PASSWORD)
        assert admin.alter_user_scram_credentials([upsert]) == {"retrain": None}
    finally:
        admin.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512", "mTLS"])
def test_the_services_work_over_tls_and_sasl_and_never_log_a_secret(
    secure_broker: SecureBroker,
    topic_settings: TopicSettings,
    unique: str,
    tmp_path: Path,
    mechanism: str,
    kafka_client: str,
):
    if mechanism.startswith("SCRAM"):
        add_scram_user(secure_broker.plaintext)
    kafka = secure_settings(secure_broker, mechanism, client=kafka_client)
    # Authentication is enforced: a wrong password, or no client certificate, gets nowhere.
    refused = (
        KafkaSettings(
            bootstrap_servers=secure_broker.mutual_tls, security_protocol="SSL", ssl_cafile=secure_broker.cafile
        )
        if mechanism == "mTLS"
        else secure_settings(secure_broker, mechanism, password="wrong-password")
    )
    with pytest.raises(KafkaError):
        make_admin(refused, request_timeout_ms=5_000)

    admin = make_admin(kafka)
    try:
        assert ensure_topics(topic_admin(admin), pipeline_topics(topic_settings)).ok
    finally:
        admin.close()
    stream = sea_stream(sea_model(), n=N, drift_at=None, model_id="secure")
    producer = make_producer(kafka)
    for item in stream:  # scoring requests for the scorer, then their labels for the detector
        p = item.prediction
        request = ScoringRequest(
            prediction_id=p.prediction_id, model_id=p.model_id, features=p.features, timestamp=p.timestamp
        )
        producer.send(topic_settings.scoring_requests, key=b"secure", value=encode(request))
    for item in stream:
        producer.send(topic_settings.labels, key=b"secure", value=encode(item.label))
    producer.flush()
    producer.close()

    secure_env = {**service_env(kafka), "RETRAIN_REGISTRY_PATH": str(tmp_path / "models")}
    trainer_port = free_port()
    services = [
        Detector(
            kafka,
            topic_settings,
            f"scorer-{unique}",
            "scorer",
            RETRAIN_SCORER_GROUP_ID=f"scorer-{unique}",
            RETRAIN_METRICS_SCORER_PORT=str(free_port()),
            **secure_env,
        ),
        Detector(kafka, topic_settings, f"detector-{unique}", **secure_env),
        Detector(
            kafka,
            topic_settings,
            f"trainer-{unique}",
            "trainer",
            RETRAIN_TRAINER_GROUP_ID=f"trainer-{unique}",
            RETRAIN_METRICS_TRAINER_PORT=str(trainer_port),
            **secure_env,
        ),
    ]
    try:
        for service in services:
            service.start()
        deadline, count, buffered = time.monotonic() + 120, 0.0, 0.0
        while time.monotonic() < deadline and (count < N or buffered < N):
            time.sleep(0.5)
            assert all(service.process.poll() is None for service in services), "a service exited"
            count = services[1].joined()
            try:
                buffered = sample(scrape(trainer_port), 'retrain_buffer_examples{model_id="secure"}') or 0.0
            except OSError:
                continue
        if count != N or buffered != N:
            tails = "\n".join(f"--- {s.command}:\n{s.output()[-3_000:]}" for s in services)
            raise AssertionError(f"joined {count}, buffered {buffered} of {N} over SASL_SSL ({mechanism}):\n{tails}")
        for service in services:
            assert service.terminate() == 0, service.command
    finally:
        for service in services:
            service.kill_if_running()
    for service in services:
        output = service.outputs[-1]
        assert f"{service.command}: reading" in output
        assert PASSWORD not in output and STORE_PASSWORD not in output and KEY_PASSWORD not in output, service.command
        assert service.env["RETRAIN_REGISTRY_HMAC_KEY"] not in output, service.command

    examples = [decode_record(r, LabeledExample) for r in read_all(kafka, topic_settings.labeled_examples, 3)]
    assert sorted(e.prediction_id for e in examples) == sorted(s.prediction.prediction_id for s in stream)

    shown = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "config"],
        cwd=REPO_ROOT,
        env=services[1].env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr
    assert KEY_PASSWORD not in shown.stdout + shown.stderr
