"""The project's own local Kafka broker (``retrain kafka start``): ``RETRAIN_BROKER_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class BrokerSettings(BaseSettings):
    """The project's own single-node Apache Kafka (``retrain kafka start``), for development and tests."""

    model_config = env_config("RETRAIN_BROKER_")

    kafka_version: str = Field(
        default="4.1.1", pattern=r"^4\.\d+\.\d+$", description="Apache Kafka version of the local broker (4.x)."
    )
    scala_version: str = Field(default="2.13", pattern=r"^2\.13$", description="Scala version of the Kafka jars.")
    host: str = Field(default="127.0.0.1", description="Host the local broker listens on.")
    port: int = Field(default=9092, ge=1, le=65535, description="Port of the local broker's listener.")
    controller_port: int | None = Field(default=None, ge=1, le=65535, description="Defaults to port + 1")
    cache_dir: Path = Field(default=Path(".cache/kafka"), description="The Kafka jars and Maven's repository.")
    data_dir: Path | None = Field(default=None, description="Defaults to <cache_dir>/data-<port>")
    heap: str = Field(default="1g", pattern=r"^\d+[mMgG]$", description="JVM maximum heap of the local broker.")
    start_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="`retrain kafka start` fails when the broker has not answered a metadata request by then.",
    )

    @property
    def resolved_controller_port(self) -> int:
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.cache_dir / f"data-{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"
