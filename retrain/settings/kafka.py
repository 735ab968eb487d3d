"""How every service and command reaches the Kafka cluster: ``RETRAIN_KAFKA_*``, credentials included.

Credentials are ``SecretStr``: they print as ``**********`` in ``repr``, ``str`` and ``model_dump``, and are
revealed only in :meth:`KafkaSettings.client_config`, which goes straight to kafka-python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How every service and command reaches the Kafka cluster."""

    model_config = env_config("RETRAIN_KAFKA_")

    bootstrap_servers: str = Field(default="localhost:9092", description="Comma-separated `host:port` of the brokers.")
    # The client library behind retrain.kafka: kafka-python (pure Python, the default) or confluent-kafka
    # (librdkafka, several times the consume rate; pip install 'kafka-retrain[confluent]').
    client: Literal["kafka-python", "confluent-kafka"] = Field(
        default="kafka-python",
        description="The Kafka client library behind `retrain.kafka`: `kafka-python` (pure Python) or "
        "`confluent-kafka` (librdkafka; `pip install 'kafka-retrain[confluent]'`).",
    )
    client_id: str = Field(default="retrain", description="Client id sent to the brokers.")
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="Plain, TLS, SASL, or SASL over TLS, for every client of every service."
    )
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="Required with the `SASL_*` protocols.")
    sasl_username: str | None = Field(default=None, description="Required with the `SASL_*` protocols.")
    sasl_password: SecretStr | None = Field(
        default=None, description="Required with the `SASL_*` protocols. A secret: never printed or logged."
    )
    ssl_cafile: Path | None = Field(default=None, description="CA certificate (PEM) of the brokers' certificates.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM), for mutual TLS.")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM), for mutual TLS.")
    ssl_password: SecretStr | None = Field(default=None, description="Password of the client's private key. A secret.")
    ssl_check_hostname: bool = Field(default=True, description="Verify that the broker's certificate names its host.")
    request_timeout_ms: int = Field(
        default=30_000, ge=1_000, description="How long a client waits for a broker's answer to one request."
    )
    # Consumer groups: a crashed member's partitions go to the others (or to its restart) once its session
    # expires. kafka-python 3 defaults to 45 s; heartbeats come from a background thread every 3 s, so a long
    # batch or fit does not expire a session (max_poll_interval_ms covers that). The broker accepts 6 s to 30 min.
    session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        le=1_800_000,
        description="A crashed consumer group member's partitions move to the others (or to its restart) after this. "
        "kafka-python's own default is 45 s.",
    )
    # at_least_once: outputs flushed, then offsets committed (a crash can repeat a batch's outputs).
    # exactly_once: each batch's outputs, state snapshots and offsets in one Kafka transaction, and every consumer
    # reads committed records only. The transactional id must be stable across restarts of one instance and
    # distinct between instances (default: service, group and host name: set it when one host runs several).
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="`at_least_once`: outputs flushed, then offsets committed (a crash can repeat a batch's outputs). "
        "`exactly_once`: each batch's outputs, state and offsets in one Kafka transaction; consumers read committed "
        "records only.",
    )
    transactional_id: str | None = Field(
        default=None,
        description="`exactly_once` only: stable across restarts of one instance, distinct between instances. "
        "Unset: `retrain-<service>-<group>-<host name>` (set it when one host runs several instances of a service).",
    )

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("RETRAIN_KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("RETRAIN_KAFKA_SASL_USERNAME", self.sasl_username),
                    ("RETRAIN_KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)} to be set")
        return self

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python's producer, consumer and admin client.

        This is the only place a secret is revealed; never log its result.
        """
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_list,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # checked by _sasl_is_complete
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for key, path in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if path is not None:
                    config[key] = str(path)
            if self.ssl_password is not None:
                config["ssl_password"] = self.ssl_password.get_secret_value()
        return config
