"""The model registry on the file system (``RETRAIN_REGISTRY_URI`` ``file://…``, the default).

Versioned, signed artifacts and the champion of each model.

Layout under the registry's root::

    <root>/<model_id>/<version>/model.joblib    the estimator, serialised with joblib
    <root>/<model_id>/<version>/metadata.json   ModelVersionInfo: window, metrics, sha256, HMAC, ...
    <root>/<model_id>/champion.json             the version in service and the stack of promotions

A version appears whole or not at all: its files are written (and fsynced) into a hidden temporary directory
that is then renamed to the version number, so a crash leaves at most an invisible ``.tmp-*`` directory.
``champion.json`` and an updated ``metadata.json`` are replaced atomically the same way (temp file +
``os.replace``).

An artifact is unpickled only after its bytes match the sha256 and HMAC its metadata records and the metadata
matches its own signature; ``champion.json`` is signed too (see :mod:`retrain.registry.records`).

One writer per model is assumed (the trainer instance that owns the model's partition); two writers racing
for the same version number are told apart by the rename, which fails for the loser (it then takes the next
number), but concurrent promotions of one model are not serialised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.registry.records import (
    ADVICE,
    ArtifactVerificationError,
    ModelVersionInfo,
    RecordVerificationError,
    RegistryError,
    Signer,
    check_model_id,
    is_int,
    unpickle,
)

if TYPE_CHECKING:
    from retrain.settings import RegistrySettings

logger = logging.getLogger(__name__)

ARTIFACT_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CHAMPION_FILE = "champion.json"

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_DIR = re.compile(r"[1-9][0-9]*")
_REGISTER_ATTEMPTS = 10


class ModelRegistry:
    """Versioned models of every ``model_id`` under one directory, signed with an HMAC key.

    Without a key (``None``), versions, metadata and champions can be read, but nothing can be registered,
    loaded, promoted or rolled back.
    """

    def __init__(self, path: Path, hmac_key: str | bytes | None) -> None:
        self.path = Path(path).resolve()
        self.signer = Signer(hmac_key)

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> ModelRegistry:
        key = settings.hmac_key.get_secret_value() if settings.hmac_key is not None else None
        return cls(settings.path, key)

    @property
    def location(self) -> str:
        return str(self.path)

    # -- reading ---------------------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Every model id with a directory in the registry, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and _MODEL_ID.fullmatch(p.name))

    def versions(self, model_id: str) -> list[ModelVersionInfo]:
        """The model's versions, oldest first; empty for a model never registered."""
        return [self.info(model_id, version) for version in self._version_numbers(model_id)]

    def info(self, model_id: str, version: int) -> ModelVersionInfo:
        """The metadata of one version; RegistryError if it does not exist or its metadata.json is invalid."""
        try:
            return self._read_info(model_id, version)
        except ValueError as error:
            raise RegistryError(
                f"{model_id} version {version}: {self._version_dir(model_id, version) / METADATA_FILE} is invalid "
                f"({error}); restore it or remove the version"
            ) from error

    def find_by_trigger(self, model_id: str, trigger_event_id: str) -> ModelVersionInfo | None:
        """The version registered for this retrain event, if any (a redelivered event must not train twice)."""
        return next((info for info in self.versions(model_id) if info.trigger_event_id == trigger_event_id), None)

    def champion(self, model_id: str) -> ModelVersionInfo | None:
        """The version in service, or None before the first promotion."""
        state = self._read_champion(model_id)
        return self.info(model_id, state["version"]) if state else None

    def load(self, model_id: str, version: int) -> Any:
        """The estimator of a version, unpickled only once its bytes match their sha256 and HMAC."""
        return unpickle(*self._verified(model_id, version))

    # -- writing ---------------------------------------------------------------------------------------------

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
    ) -> ModelVersionInfo:
        """Store a new version (the highest existing + 1), signed; not promoted.

        ``training_window`` has exactly the keys ``n_samples``, ``first_label_timestamp`` and
        ``last_label_timestamp``; the timestamps are aware datetimes, ISO 8601 strings or None. Look for an
        earlier version of the same retrain event with :meth:`find_by_trigger` first: register never does.
        """
        template, artifact = self.signer.new_version(  # validated before anything is written
            model_id,
            estimator,
            n_samples=n_samples,
            metrics=dict(metrics),
            training_window=dict(training_window),
            trigger_event_id=trigger_event_id,
            reason=reason,
        )
        model_dir = self._model_dir(model_id)
        model_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(_REGISTER_ATTEMPTS):
            version = max(self._version_numbers(model_id), default=0) + 1
            target = model_dir / str(version)
            info = self.signer.sign(replace(template, version=version, artifact_uri=(target / ARTIFACT_FILE).as_uri()))
            staging = model_dir / f".tmp-{version}-{uuid.uuid4().hex}"
            try:
                staging.mkdir()
                _write_synced(staging / ARTIFACT_FILE, artifact)
                _write_synced(staging / METADATA_FILE, info.to_json().encode())
                _fsync_dir(staging)
                os.rename(staging, target)  # fails if another writer took this number: its directory is not empty
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                if target.exists():
                    continue
                raise
            _fsync_dir(model_dir)
            logger.info("registered %s version %d (sha256 %s)", model_id, version, info.sha256)
            return info
        raise RegistryError(f"cannot register {model_id}: other writers kept taking the next version number")

    def promote(self, model_id: str, version: int) -> ModelVersionInfo:
        """Make a verified version the champion and record when; promoting the champion again changes nothing."""
        info, _ = self._verified(model_id, version)
        try:
            state = self._read_champion(model_id) or {"model_id": model_id, "version": None, "history": []}
        except RecordVerificationError as error:  # the key's holder puts a version in service: a new record
            logger.warning("%s; its promotion history starts again with version %d", error, version)
            state = {"model_id": model_id, "version": None, "history": []}
        if state["version"] == version:
            return info
        now = datetime.now(UTC)
        info = replace(info, promoted_at=now)
        _write_atomic(self._version_dir(model_id, version) / METADATA_FILE, info.to_json().encode())
        history = [*state["history"], {"version": version, "promoted_at": now.isoformat()}]
        self._write_champion(model_id, history)
        logger.info("promoted %s version %d", model_id, version)
        return info

    def rollback(self, model_id: str) -> ModelVersionInfo:
        """Put the previously promoted version back in service (each call goes one promotion further back)."""
        state = self._read_champion(model_id)
        if state is None or len(state["history"]) < 2:
            raise RegistryError(f"{model_id} has no earlier promoted version to roll back to")
        history = state["history"][:-1]
        info, _ = self._verified(model_id, history[-1]["version"])
        self._write_champion(model_id, history)
        logger.info("rolled %s back from version %d to %d", model_id, state["version"], info.version)
        return info

    # -- internals -------------------------------------------------------------------------------------------

    def _model_dir(self, model_id: str) -> Path:
        check_model_id(model_id, error=RegistryError)
        return self.path / model_id

    def _version_dir(self, model_id: str, version: int) -> Path:
        if not is_int(version) or version < 1:
            raise RegistryError(f"a version is an integer >= 1, got {version!r}")
        return self._model_dir(model_id) / str(version)

    def _version_numbers(self, model_id: str) -> list[int]:
        model_dir = self._model_dir(model_id)
        if not model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and _VERSION_DIR.fullmatch(p.name))

    def _read_info(self, model_id: str, version: int) -> ModelVersionInfo:
        """The metadata; RegistryError for an unknown version, ValueError for an invalid or mismatching file."""
        path = self._version_dir(model_id, version) / METADATA_FILE
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            known = self._version_numbers(model_id)
            raise RegistryError(f"{model_id} has no version {version} (versions: {known or 'none'})") from None
        info = ModelVersionInfo.from_json(text)
        if (info.model_id, info.version) != (model_id, version):
            raise ValueError(f"it describes {info.model_id} version {info.version}")
        return info

    def _verified(self, model_id: str, version: int) -> tuple[ModelVersionInfo, bytes]:
        """The metadata and the artifact's bytes, once both match their digests and signatures."""
        self.signer.require(f"verify {model_id} version {version}")
        what = f"{model_id} version {version}"
        try:
            info = self._read_info(model_id, version)
        except ValueError as error:
            raise ArtifactVerificationError(f"{what}: unusable metadata ({error}); {ADVICE}") from error
        try:
            data = (self._version_dir(model_id, version) / ARTIFACT_FILE).read_bytes()
        except FileNotFoundError:
            raise ArtifactVerificationError(f"{what}: the artifact {ARTIFACT_FILE} is missing; {ADVICE}") from None
        self.signer.check(info, data, ARTIFACT_FILE)
        return info, data

    def _read_champion(self, model_id: str) -> dict[str, Any] | None:
        """champion.json: {"model_id", "version", "history": [{"version", "promoted_at"}, ...]}, or None."""
        path = self._model_dir(model_id) / CHAMPION_FILE
        try:
            state = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise RegistryError(f"{path} is not JSON ({error}); restore it, or promote a version again") from error
        history = state.get("history") if isinstance(state, dict) else None
        if not (
            isinstance(history, list)
            and history
            and all(isinstance(entry, dict) and is_int(entry.get("version")) for entry in history)
            and state.get("model_id") == model_id
            and state.get("version") == history[-1]["version"]
        ):
            raise RegistryError(f"{path} is inconsistent; restore it, or promote a version again")
        self.signer.check_record(state, str(path))
        return state

    def _write_champion(self, model_id: str, history: list[dict[str, Any]]) -> None:
        state = {"model_id": model_id, "version": history[-1]["version"], "history": history}
        state = self.signer.sign_record(state, f"promote {model_id}")
        _write_atomic(self._model_dir(model_id) / CHAMPION_FILE, (json.dumps(state, indent=2) + "\n").encode())


# -- atomic files ----------------------------------------------------------------------------------------------


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old content or the new, never a mix."""
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        _write_synced(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
