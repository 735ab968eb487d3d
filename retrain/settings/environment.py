"""How every settings class reads the environment: its own ``RETRAIN_<GROUP>_`` prefix, frozen, case-insensitive."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict


def env_config(prefix: str) -> SettingsConfigDict:
    """The model config of a settings class whose variables all start with ``prefix``."""
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)
