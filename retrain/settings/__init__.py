"""Configuration, read from the environment (prefix ``RETRAIN_``) and validated once at start-up.

Each concern has its own frozen settings class, in its own module, and its own prefix, so every variable name is
flat and greppable: ``RETRAIN_KAFKA_BOOTSTRAP_SERVERS``, ``RETRAIN_TOPIC_PREDICTIONS``, ``RETRAIN_BROKER_PORT``.
Credentials are ``SecretStr``: they print as ``**********`` in ``repr``, ``str`` and ``model_dump``, and are
revealed only in :meth:`KafkaSettings.client_config`, which goes straight to kafka-python.

:class:`Settings` groups them all; import every class from here, ``retrain.settings``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from retrain.settings.broker import BrokerSettings
from retrain.settings.detector import DetectorSettings
from retrain.settings.kafka import KafkaSettings, SaslMechanism, SecurityProtocol
from retrain.settings.metrics import MetricsSettings
from retrain.settings.models import ModelSettings
from retrain.settings.registry import RegistrySettings
from retrain.settings.scorer import ScorerSettings, parse_target_literal
from retrain.settings.topics import TopicSettings
from retrain.settings.trainer import TrainerSettings

__all__ = [
    "BrokerSettings",
    "DetectorSettings",
    "KafkaSettings",
    "MetricsSettings",
    "ModelSettings",
    "RegistrySettings",
    "SaslMechanism",
    "ScorerSettings",
    "SecurityProtocol",
    "Settings",
    "TopicSettings",
    "TrainerSettings",
    "load_settings",
    "parse_target_literal",
]


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
