"""The model registry: where versioned artifacts live and the key that signs them: ``RETRAIN_REGISTRY_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class RegistrySettings(BaseSettings):
    """The trainer's model registry: where versioned artifacts live and the key that signs them."""

    model_config = env_config("RETRAIN_REGISTRY_")

    path: Path = Field(
        default=Path(".cache/models"),
        description="Directory of the file registry when `RETRAIN_REGISTRY_URI` is unset.",
    )
    # file:///abs/path (the file registry; default: `path`), or an MLflow tracking server: mlflow://host:port
    # (plain HTTP) or http(s)://host:port. Credentials for MLflow go in MLFLOW_TRACKING_USERNAME/PASSWORD.
    uri: str | None = Field(
        default=None,
        description="`file:///abs/path`, or an MLflow tracking server: `mlflow://host:port` (plain HTTP) or "
        "`http(s)://host:port`. Unset: the file registry at `path`. MLflow credentials go in "
        "`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, never in the URI.",
    )
    # HMAC-SHA256 key that signs every artifact; saving or loading a model needs it. Never printed or logged.
    hmac_key: SecretStr | None = Field(
        default=None,
        description="At least 32 characters. Signs and verifies every model artifact, version and champion record "
        "(and, through a derived key, the detector's state); required by the trainer, the scorer and `retrain models "
        "promote|rollback`. A secret.",
    )

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
