"""Where each service serves ``/metrics``: ``RETRAIN_METRICS_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class MetricsSettings(BaseSettings):
    """Where each service serves ``/metrics`` for Prometheus. Loopback only unless configured otherwise."""

    model_config = env_config("RETRAIN_METRICS_")

    host: str = Field(default="127.0.0.1", description="Interface every service serves `/metrics` on.")
    detector_port: int = Field(default=9411, ge=1, le=65535, description="Port of the detector's `/metrics`.")
    trainer_port: int = Field(default=9412, ge=1, le=65535, description="Port of the trainer's `/metrics`.")
    scorer_port: int = Field(default=9413, ge=1, le=65535, description="Port of the scorer's `/metrics`.")
