"""Model registries: versioned, signed models and the champion of each, on a file system or in MLflow.

``RETRAIN_REGISTRY_URI`` chooses the backend: ``file:///path`` (the default, ``RETRAIN_REGISTRY_PATH``) or an
MLflow tracking server (``mlflow://host:port`` for plain HTTP, or its ``http(s)://`` URI). Both keep the same
promises: a version appears whole or not at all, and nothing is unpickled before its artifact, its metadata and
the champion record that names it match what the registry's HMAC key signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from retrain.registry.files import ModelRegistry
from retrain.registry.records import ArtifactVerificationError, ModelVersionInfo, RegistryError

if TYPE_CHECKING:
    from retrain.settings import RegistrySettings

__all__ = [
    "ArtifactVerificationError",
    "ModelRegistry",
    "ModelVersionInfo",
    "Registry",
    "RegistryError",
    "open_registry",
]


class Registry(Protocol):
    """What the trainer, the scorer and ``retrain models`` ask of a registry, whatever its backend."""

    @property
    def location(self) -> str:
        """Where it is, for logs (never a credential)."""
        ...

    def models(self) -> list[str]: ...

    def versions(self, model_id: str) -> list[ModelVersionInfo]:
        """Oldest first."""
        ...

    def info(self, model_id: str, version: int) -> ModelVersionInfo: ...

    def find_by_trigger(self, model_id: str, trigger_event_id: str) -> ModelVersionInfo | None: ...

    def champion(self, model_id: str) -> ModelVersionInfo | None: ...

    def load(self, model_id: str, version: int) -> Any:
        """The verified, unpickled estimator of a version."""
        ...

    def register(
        self,
        model_id: str,
        estimator: Any,
        *,
        n_samples: int,
        metrics: Mapping[str, float],
        training_window: Mapping[str, Any],
        trigger_event_id: str | None,
        reason: str | None = None,
    ) -> ModelVersionInfo: ...

    def promote(self, model_id: str, version: int) -> ModelVersionInfo: ...

    def rollback(self, model_id: str) -> ModelVersionInfo: ...


def open_registry(settings: RegistrySettings) -> Registry:
    """The registry ``settings.uri`` names (the file registry at ``settings.path`` when it names none)."""
    key = settings.hmac_key.get_secret_value() if settings.hmac_key is not None else None
    backend, location = settings.backend()
    if backend == "mlflow":
        from retrain.registry.mlflow import MlflowRegistry

        return MlflowRegistry(location, key)
    return ModelRegistry(location, key)  # type: ignore[arg-type]
