"""A version loaded for service: found, verified (sha256 and HMAC before unpickling) and a :class:`FittedModel`."""

from __future__ import annotations

from retrain.decisions.scoring import ServedModel
from retrain.decisions.training import FittedModel
from retrain.registry import ArtifactVerificationError, Registry, RegistryError


class ModelLoadError(RuntimeError):
    """A version that cannot go into service: refused by verification, missing, unreadable, or not a model."""


def load_version(registry: Registry, model_id: str, version: int, sha256: str | None = None) -> ServedModel:
    """A verified version of ``model_id``; ``sha256``, when given (a model update's), must be the registry's too."""
    what = f"{model_id} version {version}"
    try:
        info = registry.info(model_id, version)
        if sha256 is not None and info.sha256 != sha256:
            raise ModelLoadError(
                f"{what}: the update announced sha256 {sha256[:12]}..., the registry holds {info.sha256[:12]}... "
                "(another registry, or the version was replaced); not loaded"
            )
        model = registry.load(model_id, version)  # verifies the artifact's sha256 and HMAC before unpickling
    except (RegistryError, ArtifactVerificationError) as error:
        raise ModelLoadError(str(error)) from error
    except ModelLoadError:
        raise
    except Exception as error:  # a verified artifact that does not unpickle here (library versions, ...)
        raise ModelLoadError(f"{what}: {type(error).__name__}: {error}") from error
    if not isinstance(model, FittedModel):
        raise ModelLoadError(f"{what} is a {type(model).__name__}, not a FittedModel; it cannot score requests")
    return ServedModel(model_id, version, model, info.sha256)
