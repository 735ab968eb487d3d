"""Configuration, read from the environment (prefix ``RETRAIN_``) and validated once at start-up.

Each concern has its own frozen settings class and its own prefix, so every variable name is flat and
greppable: ``RETRAIN_KAFKA_BOOTSTRAP_SERVERS``, ``RETRAIN_TOPIC_PREDICTIONS``, ``RETRAIN_BROKER_PORT``.
Credentials are ``SecretStr``: they print as ``**********`` in ``repr``, ``str`` and ``model_dump``, and are
revealed only in :meth:`KafkaSettings.client_config`, which goes straight to kafka-python.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)


class KafkaSettings(BaseSettings):
    """How every service and command reaches the Kafka cluster."""

    model_config = _config("RETRAIN_KAFKA_")

    bootstrap_servers: str = "localhost:9092"
    # The client library behind retrain.kafka: kafka-python (pure Python, the default) or confluent-kafka
    # (librdkafka, several times the consume rate; pip install 'kafka-retrain[confluent]').
    client: Literal["kafka-python", "confluent-kafka"] = "kafka-python"
    client_id: str = "retrain"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    # Consumer groups: a crashed member's partitions go to the others (or to its restart) once its session
    # expires. kafka-python 3 defaults to 45 s; heartbeats come from a background thread every 3 s, so a long
    # batch or fit does not expire a session (max_poll_interval_ms covers that). The broker accepts 6 s to 30 min.
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=1_800_000)
    # at_least_once: outputs flushed, then offsets committed (a crash can repeat a batch's outputs).
    # exactly_once: each batch's outputs, state snapshots and offsets in one Kafka transaction, and every consumer
    # reads committed records only. The transactional id must be stable across restarts of one instance and
    # distinct between instances (default: service, group and host name: set it when one host runs several).
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    transactional_id: str | None = None

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


class TopicSettings(BaseSettings):
    """Topic names and partition counts.

    ``scoring-requests``, ``predictions``, ``labels`` and ``labeled-examples`` share ``stream_partitions`` so
    that they are co-partitioned: with the same key (``model_id``) and the same count, a model's predictions and
    labels land in the same partition number and meet in one consumer.
    """

    model_config = _config("RETRAIN_TOPIC_")

    scoring_requests: str = "scoring-requests"
    predictions: str = "predictions"
    labels: str = "labels"
    labeled_examples: str = "labeled-examples"
    retrain_events: str = "retrain-events"
    model_updates: str = "model-updates"
    dead_letters: str = "dead-letters"
    # Compacted, co-partitioned with the streams: the detector's state snapshot of each partition.
    detector_state: str = "detector-state"
    # Compacted, co-partitioned: the changelog of the detector's on-disk state stores (one per partition).
    detector_changelog: str = "detector-changelog"

    stream_partitions: int = Field(default=6, ge=1, le=10_000)
    control_partitions: int = Field(default=1, ge=1, le=10_000)
    dead_letter_partitions: int = Field(default=1, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    labeled_examples_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    dead_letters_retention_ms: int = Field(default=14 * 24 * 3600 * 1000, ge=-1)

    @model_validator(mode="after")
    def _names_are_distinct(self) -> TopicSettings:
        names = self.names()
        if len(set(names.values())) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self

    def names(self) -> dict[str, str]:
        """Role -> topic name, for every topic the pipeline uses."""
        return {
            "scoring_requests": self.scoring_requests,
            "predictions": self.predictions,
            "labels": self.labels,
            "labeled_examples": self.labeled_examples,
            "retrain_events": self.retrain_events,
            "model_updates": self.model_updates,
            "dead_letters": self.dead_letters,
            "detector_state": self.detector_state,
            "detector_changelog": self.detector_changelog,
        }


class BrokerSettings(BaseSettings):
    """The project's own single-node Apache Kafka (``retrain kafka start``), for development and tests."""

    model_config = _config("RETRAIN_BROKER_")

    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    scala_version: str = Field(default="2.13", pattern=r"^2\.13$")
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int | None = Field(default=None, ge=1, le=65535, description="Defaults to port + 1")
    cache_dir: Path = Path(".cache/kafka")
    data_dir: Path | None = Field(default=None, description="Defaults to <cache_dir>/data-<port>")
    heap: str = Field(default="1g", pattern=r"^\d+[mMgG]$")
    start_timeout_s: float = Field(default=90.0, gt=0)

    @property
    def resolved_controller_port(self) -> int:
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.cache_dir / f"data-{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class MetricsSettings(BaseSettings):
    """Where each service serves ``/metrics`` for Prometheus. Loopback only unless configured otherwise."""

    model_config = _config("RETRAIN_METRICS_")

    host: str = "127.0.0.1"
    detector_port: int = Field(default=9411, ge=1, le=65535)
    trainer_port: int = Field(default=9412, ge=1, le=65535)
    scorer_port: int = Field(default=9413, ge=1, le=65535)


class DetectorSettings(BaseSettings):
    """The detector service: the join, the drift detectors and the retrain triggers."""

    model_config = _config("RETRAIN_DETECTOR_")

    group_id: str = "retrain-detector"
    # Snapshot each partition's detector state (signed with the registry's HMAC key) when its offsets are
    # committed, and restore it when the partition is assigned again. Off, or without a key, a restart or a
    # rebalance starts the partition's detectors afresh (its joins are still complete).
    state_snapshots: bool = True
    # A snapshot larger than this (hundreds of models in one partition) is written as several records; keep it
    # under the detector-state topic's max.message.bytes (Kafka's default: 1 MiB).
    snapshot_record_bytes: int = Field(default=512 * 1024, ge=1_024, le=64 * 1024 * 1024)
    # Models whose error is |y - y_hat| (regression); every other model is a classifier with a 0/1 error.
    regression_models: str = Field(default="", description="Comma-separated model ids")
    # JSON list of {"name": <River detector>, "params": {...}}; River's defaults where params are absent.
    detectors: str = (
        '[{"name": "ADWIN", "params": {"delta": 0.01}}, {"name": "PageHinkley", "params": {"threshold": 100}}]'
    )
    drift_quorum: int = Field(default=1, ge=1)
    agreement_window: int = Field(default=1_000, ge=1)
    performance_window: int = Field(default=500, ge=1)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    max_error: float | None = Field(default=None, ge=0)
    relative_drop: float | None = Field(default=0.9, gt=0, lt=1)
    volume_examples: int | None = Field(default=100_000, ge=1)
    cold_start_examples: int = Field(default=1_000, ge=1)
    cooldown_examples: int = Field(default=10_000, ge=1)
    cooldown_s: float = Field(default=3_600.0, gt=0)
    # Post-change training: after a drift, fits on the examples since the change point, the first once there are
    # refit_first of them, again as they grow x refit_growth, until refit_until (skipped once recovered).
    post_change_training: bool = True
    refit_first: int = Field(default=1_500, ge=1)
    refit_growth: float = Field(default=2.5, gt=1)
    refit_until: int = Field(default=5_000, ge=1)
    recovered_margin: float | None = Field(default=0.02, ge=0)
    # A change is confident when the error rose by this many standard errors at its change point; otherwise a retrain
    # uses every example since the last confident change and must beat the champion beyond noise. None: always.
    confident_rise_z: float | None = Field(default=3.0, gt=0)
    change_history: int = Field(default=10_000, ge=2)
    # Label-free data drift: a detector per feature of the prediction stream (opt-in).
    feature_drift: bool = False
    feature_detector: str = '{"name": "ADWIN"}'
    feature_limit: int = Field(default=64, ge=1, le=1024)
    # Where the join's pending records (and, with snapshots, the detectors' state) live: rocksdb, a store per
    # partition on local disk backed by the compacted detector-changelog topic; memory, RAM only (commits then
    # wait for the oldest pending record, and a restart reads both topics again from there).
    state_store: Literal["rocksdb", "memory"] = "rocksdb"
    # The stores live under <state_dir>/<group_id>/<partition>; one directory per instance on a machine.
    state_dir: Path = Field(
        default=Path(".cache/state"),
        validation_alias=AliasChoices("RETRAIN_STATE_DIR", "RETRAIN_DETECTOR_STATE_DIR", "state_dir"),
    )
    prediction_ttl_s: float = Field(default=7 * 86_400.0, gt=0)
    label_ttl_s: float = Field(default=600.0, gt=0)
    # An event time further ahead of its record's timestamp (or of the clock) is refused: it would move the join's
    # watermark and expire every pending prediction it passes.
    max_event_time_skew_s: float = Field(default=300.0, ge=0)
    # Pending records per partition, both sides; past it the oldest are evicted and counted. Default: 50,000,000
    # with the rocksdb store (disk), 1,000,000 in memory (RAM).
    max_pending: int | None = Field(default=None, ge=1)
    max_poll_records: int = Field(default=1_000, ge=1)

    @property
    def pending_cap(self) -> int:
        if self.max_pending is not None:
            return self.max_pending
        return 50_000_000 if self.state_store == "rocksdb" else 1_000_000

    @property
    def regression_model_ids(self) -> frozenset[str]:
        return frozenset(model.strip() for model in self.regression_models.split(",") if model.strip())


class TrainerSettings(BaseSettings):
    """The trainer service: buffers, estimator, training window, promotion."""

    model_config = _config("RETRAIN_TRAINER_")

    group_id: str = "retrain-trainer"
    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    estimator_params: str = '{"early_stopping": true, "random_state": 0}'
    regression_estimator: str = "sklearn.ensemble.HistGradientBoostingRegressor"
    regression_estimator_params: str = '{"random_state": 0}'
    # JSON: {"<model_id>": {"estimator": "pkg.mod.Class" or "pkg.mod:factory", "params": {...}}}
    model_estimators: str = "{}"
    regression_models: str = Field(default="", description="Comma-separated model ids")
    min_window: int = Field(default=200, ge=1)
    max_window: int = Field(default=50_000, ge=1)
    default_window: int = Field(default=5_000, ge=1)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_holdout: int = Field(default=50, ge=1)
    min_train: int = Field(default=100, ge=1)
    tolerance: float = Field(default=0.0, ge=0)
    # A challenger for a champion not known to be stale must win a one-sided paired test at this level.
    promotion_alpha: float = Field(default=0.05, gt=0, lt=1)
    buffer_max_examples: int = Field(default=100_000, ge=1)
    buffer_max_age_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    cold_start_min: int = Field(default=1_000, ge=1)
    # Threads per fit (OpenMP/BLAS); unset = the libraries' default (all cores).
    fit_threads: int | None = Field(default=1, ge=1)
    # Worker processes that fit challengers while the consume loop goes on; one fit per model at a time.
    fit_workers: int = Field(default=1, ge=1)
    # A fit still running after this is killed and answered as failed (the champion stays).
    fit_timeout_s: float = Field(default=3600.0, gt=0)
    max_poll_interval_ms: int = Field(default=30 * 60 * 1000, ge=10_000)

    @property
    def regression_model_ids(self) -> frozenset[str]:
        return frozenset(model.strip() for model in self.regression_models.split(",") if model.strip())


def parse_target_literal(text: str) -> bool | int | float | str:
    """A JSON literal that is a valid prediction: a boolean, an integer, a finite number or a string of 1-256."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f'expected a JSON literal such as 0 or "legit" ({error})') from None
    if (
        isinstance(value, bool | int)
        or (isinstance(value, float) and math.isfinite(value))
        or (isinstance(value, str) and 1 <= len(value) <= 256)
    ):
        return value
    raise ValueError(f"expected a JSON boolean, finite number or non-empty string, got {text!r}")


class ScorerSettings(BaseSettings):
    """The scorer service: its consumer group, and what it answers for a model with no version yet."""

    model_config = _config("RETRAIN_SCORER_")

    group_id: str = "retrain-scorer"
    # A JSON literal (0, "legit", true, 0.5): the prediction, with model_version 0, of a model that has no promoted
    # version yet. Its labels are what the detector's cold-start trigger trains version 1 from.
    fallback_prediction: str = "0"
    max_poll_records: int = Field(default=1_000, ge=1)
    # Models kept loaded; the least recently used one is unloaded beyond this and loaded again (verified) on its
    # next request.
    max_loaded_models: int = Field(default=200, ge=1)

    @field_validator("fallback_prediction")
    @classmethod
    def _fallback_is_a_target(cls, text: str) -> str:
        parse_target_literal(text)  # refused at start-up rather than on the first request
        return text

    @property
    def fallback(self) -> bool | int | float | str:
        return parse_target_literal(self.fallback_prediction)


_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # schemas.types.ModelId


class ModelSettings(BaseSettings):
    """Which model ids the services take on (each service on its own: the detector, the trainer, the scorer).

    Records of any other model go to ``dead-letters`` with reason ``unknown_model``. With an allow-list, exactly
    the listed models are admitted (the cap does not apply); without one, the first ``max_per_service`` ids each
    service sees, plus the models it already knew (restored watches, promoted versions, registry models).
    """

    model_config = _config("RETRAIN_MODELS_")

    allowed: str = Field(default="", description="Comma-separated model ids; empty: any, up to the cap")
    # 10,000 on one machine: the detector, the heaviest per model (46.9-48.1 KiB measured once a watch's windows
    # are full), then holds at most about 470 MiB of watches, and each service at most about 13 series per model.
    max_per_service: int = Field(default=10_000, ge=1, le=10_000_000)

    @field_validator("allowed")
    @classmethod
    def _ids_are_model_ids(cls, text: str) -> str:
        bad = [model for model in _split_ids(text) if not _MODEL_ID.fullmatch(model)]
        if bad:
            raise ValueError(f"not model ids (letters, digits, '.', '_', '-', at most 64): {bad[:5]}")
        return text

    @property
    def allowed_ids(self) -> frozenset[str]:
        return frozenset(_split_ids(self.allowed))


def _split_ids(text: str) -> list[str]:
    return [model.strip() for model in text.split(",") if model.strip()]


class RegistrySettings(BaseSettings):
    """The trainer's model registry: where versioned artifacts live and the key that signs them."""

    model_config = _config("RETRAIN_REGISTRY_")

    path: Path = Path(".cache/models")
    # file:///abs/path (the file registry; default: `path`), or an MLflow tracking server: mlflow://host:port
    # (plain HTTP) or http(s)://host:port. Credentials for MLflow go in MLFLOW_TRACKING_USERNAME/PASSWORD.
    uri: str | None = None
    # HMAC-SHA256 key that signs every artifact; saving or loading a model needs it. Never printed or logged.
    hmac_key: SecretStr | None = None

    @property
    def location(self) -> str:
        """Where the registry is, for messages (a URI never carries credentials: see the validator)."""
        return self.uri or str(self.path)

    def backend(self) -> tuple[Literal["file", "mlflow"], Any]:
        """("file", its directory) or ("mlflow", its tracking URI)."""
        if self.uri is None:
            return "file", self.path
        scheme, _, rest = self.uri.partition("://")
        if scheme == "file":
            return "file", Path(unquote(urlparse(self.uri).path))
        if scheme == "mlflow":
            return "mlflow", f"http://{rest}"
        return "mlflow", self.uri

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        if uri is not None and uri.partition("://")[0] not in ("file", "mlflow", "http", "https"):
            raise ValueError("RETRAIN_REGISTRY_URI must start with file://, mlflow://, http:// or https://")
        if uri is not None and "@" in uri.partition("://")[2].partition("/")[0]:
            raise ValueError(
                "RETRAIN_REGISTRY_URI must not carry credentials: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD instead"
            )
        return uri

    @model_validator(mode="after")
    def _key_is_long_enough(self) -> RegistrySettings:
        # Checked here rather than with Field(min_length=...) so that a refused key never appears in the error.
        if self.hmac_key is not None and len(self.hmac_key.get_secret_value()) < 32:
            raise ValueError("RETRAIN_REGISTRY_HMAC_KEY must be at least 32 characters long")
        return self


class Settings(BaseModel):
    """Everything, grouped by concern; each group reads its own ``RETRAIN_<GROUP>_`` variables."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)


def load_settings() -> Settings:
    """Read and validate the whole configuration from the environment."""
    return Settings()
