"""Which model ids the services admit (an allow-list or a cap): ``RETRAIN_MODELS_*``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # schemas.types.ModelId


class ModelSettings(BaseSettings):
    """Which model ids the services take on (each service on its own: the detector, the trainer, the scorer).

    Records of any other model go to ``dead-letters`` with reason ``unknown_model``. With an allow-list, exactly
    the listed models are admitted (the cap does not apply); without one, the first ``max_per_service`` ids each
    service sees, plus the models it already knew (restored watches, promoted versions, registry models).
    """

    model_config = env_config("RETRAIN_MODELS_")

    allowed: str = Field(default="", description="Comma-separated model ids; empty: any, up to the cap")
    # 10,000 on one machine: the detector, the heaviest per model (46.9-48.1 KiB measured once a watch's windows
    # are full), then holds at most about 470 MiB of watches, and each service at most about 13 series per model.
    max_per_service: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Without an allow-list: model ids each service instance admits, first come, first served (plus "
        "the models it already knew).",
    )

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
