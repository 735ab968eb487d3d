"""The trainer's model registry on the file system: versioned, signed artifacts and the champion of each model.

Layout under the registry's root::

    <root>/<model_id>/<version>/model.joblib    the estimator, serialised with joblib
    <root>/<model_id>/<version>/metadata.json   ModelVersionInfo: window, metrics, sha256, HMAC, ...
    <root>/<model_id>/champion.json             the version in service and the stack of promotions

A version appears whole or not at all: its files are written (and fsynced) into a hidden temporary directory
that is then renamed to the version number, so a crash leaves at most an invisible ``.tmp-*`` directory.
``champion.json`` and an updated ``metadata.json`` are replaced atomically the same way (temp file +
``os.replace``).

Unpickling runs code, so an artifact is unpickled only after its bytes match both the sha256 and the
HMAC-SHA256 (keyed with ``RETRAIN_REGISTRY_HMAC_KEY``) recorded when it was registered. Whoever can write to
the registry but does not hold the key cannot get code run by the trainer or the scorer. The metadata itself
is not signed: a signed artifact of one model copied, with its metadata, under another version would pass.

One writer per model is assumed (the trainer instance that owns the model's partition); two writers racing
for the same version number are told apart by the rename, which fails for the loser (it then takes the next
number), but concurrent promotions of one model are not serialised.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from retrain import __version__ as retrain_version

if TYPE_CHECKING:
    from retrain.settings import RegistrySettings

logger = logging.getLogger(__name__)

ARTIFACT_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CHAMPION_FILE = "champion.json"
MIN_KEY_BYTES = 32
WINDOW_KEYS = ("n_samples", "first_label_timestamp", "last_label_timestamp")

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_DIR = re.compile(r"[1-9][0-9]*")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEY_HELP = "set RETRAIN_REGISTRY_HMAC_KEY (at least 32 characters, the same for the trainer and the scorer)"
_REGISTER_ATTEMPTS = 10


class RegistryError(RuntimeError):
    """A request the registry cannot serve: unknown model or version, invalid id or argument, no key."""


class ArtifactVerificationError(RuntimeError):
    """An artifact is tampered with, unsigned, or does not match its metadata; it was not unpickled."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """The metadata of one registered version (``metadata.json``)."""

    model_id: str
    version: int
    created_at: datetime
    # {"n_samples": int, "first_label_timestamp": ISO 8601 str | None, "last_label_timestamp": ... | None}
    training_window: dict[str, Any]
    n_samples: int
    metrics: dict[str, float]
    trigger_event_id: str | None
    # {"python", "sklearn", "numpy", "river", "retrain"} -> version, None when not installed
    library_versions: dict[str, str | None]
    sha256: str
    hmac: str
    artifact_uri: str
    promoted_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_model_id(self.model_id, error=ValueError)
        if not _is_int(self.version) or self.version < 1:
            raise ValueError(f"version must be an integer >= 1, got {self.version!r}")
        if not _is_int(self.n_samples) or self.n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, got {self.n_samples!r}")
        _check_window(self.training_window)
        _check_metrics(self.metrics)
        for name in ("sha256", "hmac"):
            if not isinstance(getattr(self, name), str) or not _HEX_DIGEST.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be 64 lowercase hex digits")
        if self.trigger_event_id is not None and not isinstance(self.trigger_event_id, str):
            raise ValueError("trigger_event_id must be a string or None")
        if not isinstance(self.artifact_uri, str):
            raise ValueError("artifact_uri must be a string")
        if not isinstance(self.library_versions, dict) or not all(
            isinstance(name, str) and (value is None or isinstance(value, str))
            for name, value in self.library_versions.items()
        ):
            raise ValueError("library_versions must map names to version strings or None")
        object.__setattr__(self, "created_at", _utc(self.created_at, "created_at"))
        if self.promoted_at is not None:
            object.__setattr__(self, "promoted_at", _utc(self.promoted_at, "promoted_at"))

    def to_json(self) -> str:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["promoted_at"] = self.promoted_at.isoformat() if self.promoted_at else None
        return json.dumps(data, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelVersionInfo:
        """Parse ``metadata.json``; raises ``ValueError`` on anything malformed, missing or unknown."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("metadata must be a JSON object")
        expected = set(cls.__dataclass_fields__)
        if set(data) != expected:
            raise ValueError(f"metadata fields differ: missing {expected - set(data)}, unknown {set(data) - expected}")
        data["created_at"] = _parse_time(data["created_at"], "created_at")
        if data["promoted_at"] is not None:
            data["promoted_at"] = _parse_time(data["promoted_at"], "promoted_at")
        return cls(**data)


class ModelRegistry:
    """Versioned models of every ``model_id`` under one directory, signed with an HMAC key.

    Without a key (``None``), versions, metadata and champions can be read, but nothing can be registered,
    loaded, promoted or rolled back.
    """

    def __init__(self, path: Path, hmac_key: str | bytes | None) -> None:
        self.path = Path(path).resolve()
        key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        if key is not None and 0 < len(key) < MIN_KEY_BYTES:
            raise RegistryError(f"the registry's HMAC key is shorter than {MIN_KEY_BYTES} bytes: {_KEY_HELP}")
        self._key = key or None

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> ModelRegistry:
        key = settings.hmac_key.get_secret_value() if settings.hmac_key is not None else None
        return cls(settings.path, key)

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
        info, data = self._verified(model_id, version)
        if info.library_versions.get("sklearn") != _library_versions()["sklearn"]:
            logger.warning(
                "%s version %d was saved with scikit-learn %s, loading it with %s",
                model_id,
                version,
                info.library_versions.get("sklearn"),
                _library_versions()["sklearn"],
            )
        return joblib.load(io.BytesIO(data))

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
    ) -> ModelVersionInfo:
        """Store a new version (the highest existing + 1), signed; not promoted.

        ``training_window`` has exactly the keys ``n_samples``, ``first_label_timestamp`` and
        ``last_label_timestamp``; the timestamps are aware datetimes, ISO 8601 strings or None. Look for an
        earlier version of the same retrain event with :meth:`find_by_trigger` first: register never does.
        """
        key = self._require_key(f"register {model_id}")
        model_dir = self._model_dir(model_id)
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer)
        artifact = buffer.getvalue()
        try:  # validated before anything is written; version and artifact_uri are set per attempt below
            template = ModelVersionInfo(
                model_id=model_id,
                version=1,
                created_at=datetime.now(UTC),
                training_window={
                    name: _utc(value, name).isoformat() if isinstance(value, datetime) else value
                    for name, value in training_window.items()
                },
                n_samples=n_samples,
                metrics=dict(metrics),
                trigger_event_id=trigger_event_id,
                library_versions=dict(_library_versions()),
                sha256=hashlib.sha256(artifact).hexdigest(),
                hmac=hmac.new(key, artifact, hashlib.sha256).hexdigest(),
                artifact_uri="",
            )
        except ValueError as error:
            raise RegistryError(f"cannot register {model_id}: {error}") from error
        model_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(_REGISTER_ATTEMPTS):
            version = max(self._version_numbers(model_id), default=0) + 1
            target = model_dir / str(version)
            info = replace(template, version=version, artifact_uri=(target / ARTIFACT_FILE).as_uri())
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
        state = self._read_champion(model_id) or {"model_id": model_id, "version": None, "history": []}
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

    def _require_key(self, action: str) -> bytes:
        if self._key is None:
            raise RegistryError(f"cannot {action}: the model registry has no HMAC key; {_KEY_HELP}")
        return self._key

    def _model_dir(self, model_id: str) -> Path:
        _check_model_id(model_id, error=RegistryError)
        return self.path / model_id

    def _version_dir(self, model_id: str, version: int) -> Path:
        if not _is_int(version) or version < 1:
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
        """The metadata and the artifact's bytes, once the bytes match the metadata's sha256 and HMAC."""
        key = self._require_key(f"verify {model_id} version {version}")
        what = f"{model_id} version {version}"
        advice = "it was not loaded; register the model again, or restore the version from a trusted copy"
        try:
            info = self._read_info(model_id, version)
        except ValueError as error:
            raise ArtifactVerificationError(f"{what}: unusable metadata ({error}); {advice}") from error
        try:
            data = (self._version_dir(model_id, version) / ARTIFACT_FILE).read_bytes()
        except FileNotFoundError:
            raise ArtifactVerificationError(f"{what}: the artifact {ARTIFACT_FILE} is missing; {advice}") from None
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), info.sha256):
            raise ArtifactVerificationError(
                f"{what}: the sha256 of {ARTIFACT_FILE} does not match its metadata (the artifact was changed "
                f"after it was registered); {advice}"
            )
        if not hmac.compare_digest(hmac.new(key, data, hashlib.sha256).hexdigest(), info.hmac):
            raise ArtifactVerificationError(
                f"{what}: the HMAC of {ARTIFACT_FILE} does not match its metadata (the artifact and its metadata "
                f"were altered, or it was signed with another key); {advice}, or set RETRAIN_REGISTRY_HMAC_KEY to "
                "the key it was registered with"
            )
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
            and all(isinstance(entry, dict) and _is_int(entry.get("version")) for entry in history)
            and state.get("model_id") == model_id
            and state.get("version") == history[-1]["version"]
        ):
            raise RegistryError(f"{path} is inconsistent; restore it, or promote a version again")
        return state

    def _write_champion(self, model_id: str, history: list[dict[str, Any]]) -> None:
        state = {"model_id": model_id, "version": history[-1]["version"], "history": history}
        _write_atomic(self._model_dir(model_id) / CHAMPION_FILE, (json.dumps(state, indent=2) + "\n").encode())


# -- helpers -------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_model_id(model_id: Any, *, error: type[Exception]) -> None:
    # fullmatch, not ^...$: "$" would accept a trailing newline.
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        raise error(
            f"invalid model id {model_id!r}: 1 to 64 characters of letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


def _check_metrics(metrics: Any) -> None:
    if not isinstance(metrics, dict):
        raise ValueError("metrics must be a dict of name -> number")
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name {name!r} is not a non-empty string")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"metric {name} must be a finite number, got {value!r}")


def _check_window(window: Any) -> None:
    if not isinstance(window, dict) or set(window) != set(WINDOW_KEYS):
        raise ValueError(f"training_window must have exactly the keys {', '.join(WINDOW_KEYS)}")
    if not _is_int(window["n_samples"]) or window["n_samples"] < 0:
        raise ValueError(f"training_window n_samples must be an integer >= 0, got {window['n_samples']!r}")
    for name in WINDOW_KEYS[1:]:
        if window[name] is not None:
            _parse_time(window[name], f"training_window {name}")


def _utc(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _parse_time(text: Any, name: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be an ISO 8601 string, got {text!r}")
    return _utc(datetime.fromisoformat(text), name)


@cache
def _library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, distribution in (("sklearn", "scikit-learn"), ("numpy", "numpy"), ("river", "river")):
        try:
            versions[name] = distribution_version(distribution)
        except PackageNotFoundError:
            versions[name] = None
    versions["retrain"] = retrain_version
    return versions


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
