"""What every registry backend records and checks: version metadata, signatures, and verified unpickling.

The registry's HMAC key (``RETRAIN_REGISTRY_HMAC_KEY``) signs three things: each artifact's bytes, each version's
metadata (its model id, version number, digests and provenance), and each model's champion record (the version
in service and the promotions before it). An artifact is unpickled only after all that applies to it matches, so
whoever can write the registry's storage but does not hold the key can neither run code in the trainer or the
scorer nor swap one genuine version for another.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import math
import platform
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from typing import Any

import joblib

from retrain import __version__ as retrain_version

logger = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
WINDOW_KEYS = ("n_samples", "first_label_timestamp", "last_label_timestamp")
KEY_HELP = "set RETRAIN_REGISTRY_HMAC_KEY (at least 32 characters, the same for the trainer and the scorer)"
ADVICE = "it was not loaded; register the model again, or restore the version from a trusted copy"

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def canonical(data: Any) -> bytes:
    """The one byte form of a JSON value that is signed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class RegistryError(RuntimeError):
    """A request the registry cannot serve: unknown model or version, invalid id or argument, no key."""


class RecordVerificationError(RegistryError):
    """A champion record that does not match its signature: changed outside retrain."""


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
    reason: str | None = None  # the retrain event's reason (drift, performance, ...), if one asked for the version
    # HMAC-SHA256 of every field above but promoted_at (see :meth:`signed_payload`); "" when unsigned
    signature: str = ""

    def __post_init__(self) -> None:
        check_model_id(self.model_id, error=ValueError)
        if not is_int(self.version) or self.version < 1:
            raise ValueError(f"version must be an integer >= 1, got {self.version!r}")
        if not is_int(self.n_samples) or self.n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, got {self.n_samples!r}")
        _check_window(self.training_window)
        _check_metrics(self.metrics)
        for name in ("sha256", "hmac"):
            if not isinstance(getattr(self, name), str) or not _HEX_DIGEST.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be 64 lowercase hex digits")
        if not isinstance(self.signature, str) or not (self.signature == "" or _HEX_DIGEST.fullmatch(self.signature)):
            raise ValueError("signature must be empty or 64 lowercase hex digits")
        for name in ("trigger_event_id", "reason"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string or None")
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["promoted_at"] = self.promoted_at.isoformat() if self.promoted_at else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def signed_payload(self) -> bytes:
        """What the signature covers: the version's identity, artifact digests and provenance (not when it was
        promoted: the champion record, signed itself, says that)."""
        data = self.to_dict()
        del data["signature"], data["promoted_at"]
        return canonical(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelVersionInfo:
        """Parse ``metadata.json``; raises ``ValueError`` on anything malformed, missing or unknown."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("metadata must be a JSON object")
        expected = set(cls.__dataclass_fields__)
        data.setdefault("signature", "")  # written before metadata was signed: readable, refused at load
        data.setdefault("reason", None)
        if set(data) != expected:
            raise ValueError(f"metadata fields differ: missing {expected - set(data)}, unknown {set(data) - expected}")
        data["created_at"] = _parse_time(data["created_at"], "created_at")
        if data["promoted_at"] is not None:
            data["promoted_at"] = _parse_time(data["promoted_at"], "promoted_at")
        return cls(**data)


class Signer:
    """The registry's key: signs and checks artifacts, version metadata and champion records."""

    def __init__(self, key: str | bytes | None) -> None:
        key = key.encode() if isinstance(key, str) else key
        if key is not None and 0 < len(key) < MIN_KEY_BYTES:
            raise RegistryError(f"the registry's HMAC key is shorter than {MIN_KEY_BYTES} bytes: {KEY_HELP}")
        self._key = key or None

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def require(self, action: str) -> bytes:
        if self._key is None:
            raise RegistryError(f"cannot {action}: the model registry has no HMAC key; {KEY_HELP}")
        return self._key

    def digest(self, data: bytes, action: str) -> str:
        return hmac.new(self.require(action), data, hashlib.sha256).hexdigest()

    def new_version(
        self,
        model_id: str,
        estimator: Any,
        *,
        n_samples: int,
        metrics: dict[str, float],
        training_window: dict[str, Any],
        trigger_event_id: str | None,
        reason: str | None = None,
    ) -> tuple[ModelVersionInfo, bytes]:
        """The metadata and artifact of a version about to be registered (version 1 and no artifact_uri until the
        backend knows them; :meth:`sign` once it does). RegistryError if anything is invalid."""
        check_model_id(model_id, error=RegistryError)
        artifact = dump(estimator)
        try:
            info = ModelVersionInfo(
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
                reason=reason,
                library_versions=dict(library_versions_now()),
                sha256=hashlib.sha256(artifact).hexdigest(),
                hmac=self.digest(artifact, f"register {model_id}"),
                artifact_uri="",
            )
        except ValueError as error:
            raise RegistryError(f"cannot register {model_id}: {error}") from error
        return info, artifact

    def sign(self, info: ModelVersionInfo) -> ModelVersionInfo:
        return replace(info, signature=self.digest(info.signed_payload(), f"sign {info.model_id}"))

    def check(self, info: ModelVersionInfo, artifact: bytes, name: str = "its artifact") -> None:
        """The artifact matches its metadata's sha256 and HMAC, and the metadata its signature; else
        ArtifactVerificationError (nothing was unpickled)."""
        what = f"{info.model_id} version {info.version}"
        key = self.require(f"verify {what}")
        if not hmac.compare_digest(hashlib.sha256(artifact).hexdigest(), info.sha256):
            raise ArtifactVerificationError(
                f"{what}: the sha256 of {name} does not match its metadata (the artifact was changed after it "
                f"was registered); {ADVICE}"
            )
        if not hmac.compare_digest(hmac.new(key, artifact, hashlib.sha256).hexdigest(), info.hmac):
            raise ArtifactVerificationError(
                f"{what}: the HMAC of {name} does not match its metadata (the artifact and its metadata were "
                f"altered, or it was signed with another key); {ADVICE}, or set RETRAIN_REGISTRY_HMAC_KEY to the key "
                "it was registered with"
            )
        if not hmac.compare_digest(hmac.new(key, info.signed_payload(), hashlib.sha256).hexdigest(), info.signature):
            unsigned = " (unsigned: written before metadata was signed)" if not info.signature else ""
            raise ArtifactVerificationError(
                f"{what}: its metadata does not match its signature{unsigned}: it was changed after it was "
                f"registered (e.g. another version's metadata put in its place); {ADVICE}"
            )

    def sign_record(self, record: dict[str, Any], action: str) -> dict[str, Any]:
        """``record`` with a "signature" over the rest of it."""
        body = {name: value for name, value in record.items() if name != "signature"}
        return {**body, "signature": self.digest(canonical(body), action)}

    def check_record(self, record: dict[str, Any], what: str) -> None:
        """RegistryError unless ``record``'s "signature" matches the rest of it (skipped without a key)."""
        if self._key is None:
            return
        body = {name: value for name, value in record.items() if name != "signature"}
        expected = hmac.new(self._key, canonical(body), hashlib.sha256).hexdigest()
        signature = record.get("signature")
        if not isinstance(signature, str) or not hmac.compare_digest(expected, signature):
            raise RecordVerificationError(
                f"{what} does not match its signature (changed outside retrain, or signed with another key); "
                "promote a version again with `retrain models promote`"
            )


def unpickle(info: ModelVersionInfo, data: bytes) -> Any:
    """A version's object; call only on bytes :meth:`Signer.check` accepted."""
    saved_with, running = info.library_versions.get("sklearn"), library_versions_now()["sklearn"]
    if saved_with != running:
        logger.warning(
            "%s version %d was saved with scikit-learn %s, loading it with %s",
            info.model_id,
            info.version,
            saved_with,
            running,
        )
    return joblib.load(io.BytesIO(data))


def dump(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


# -- validation -------------------------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_model_id(model_id: Any, *, error: type[Exception]) -> None:
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
    if not is_int(window["n_samples"]) or window["n_samples"] < 0:
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
def library_versions_now() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, distribution in (("sklearn", "scikit-learn"), ("numpy", "numpy"), ("river", "river")):
        try:
            versions[name] = distribution_version(distribution)
        except PackageNotFoundError:
            versions[name] = None
    versions["retrain"] = retrain_version
    return versions
