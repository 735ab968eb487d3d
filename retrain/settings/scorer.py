"""The scorer service, and the prediction it gives for a model with no version yet: ``RETRAIN_SCORER_*``."""

from __future__ import annotations

import json
import math

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


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

    model_config = env_config("RETRAIN_SCORER_")

    group_id: str = Field(default="retrain-scorer", description="Consumer group of the scorer instances.")
    # A JSON literal (0, "legit", true, 0.5): the prediction, with model_version 0, of a model that has no promoted
    # version yet. Its labels are what the detector's cold-start trigger trains version 1 from.
    fallback_prediction: str = Field(
        default="0",
        description='A JSON literal (`0`, `"legit"`, `true`, `0.5`): the prediction, with model_version 0, of a '
        "model that has no promoted version yet.",
    )
    max_poll_records: int = Field(
        default=1_000, ge=1, description="Requests per poll batch (one `predict` per model per batch)."
    )
    # Models kept loaded; the least recently used one is unloaded beyond this and loaded again (verified) on its
    # next request.
    max_loaded_models: int = Field(
        default=200,
        ge=1,
        description="Models kept loaded; the least recently used is unloaded beyond this, and loaded again, "
        "verified, on its next request.",
    )

    @field_validator("fallback_prediction")
    @classmethod
    def _fallback_is_a_target(cls, text: str) -> str:
        parse_target_literal(text)  # refused at start-up rather than on the first request
        return text

    @property
    def fallback(self) -> bool | int | float | str:
        return parse_target_literal(self.fallback_prediction)
