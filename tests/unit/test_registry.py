"""The model registry: versions, metadata, champion and rollback, and artifacts verified before unpickling."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import pickle
import platform
import re
import shutil
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import version as distribution_version
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from pydantic import ValidationError
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import retrain
from retrain.registry import ArtifactVerificationError, ModelRegistry, ModelVersionInfo, RegistryError
from retrain.registry import records as registry_module
from retrain.settings import RegistrySettings, load_settings

KEY = "test-registry-key-0123456789abcdef"  # 34 characters
OTHER_KEY = "another-registry-key-fedcba9876543210"
MODEL = "churn"
WINDOW = {
    "n_samples": 200,
    "first_label_timestamp": datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
    "last_label_timestamp": "2026-01-02T00:00:00+00:00",
}
X, Y = make_classification(n_samples=240, n_features=4, n_informative=3, n_redundant=0, random_state=0)
X_TRAIN, Y_TRAIN, X_TEST = X[:200], Y[:200], X[200:]


class _CreatesFile:
    """Unpickling this object creates ``marker``: a stand-in for an artifact that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_payload(marker: Path) -> bytes:
    return pickle.dumps(_CreatesFile(marker))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", KEY)


@pytest.fixture
def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X_TRAIN, Y_TRAIN)


@pytest.fixture
def logistic() -> LogisticRegression:
    return LogisticRegression(random_state=0).fit(X_TRAIN, Y_TRAIN)


def register(registry: ModelRegistry, estimator, trigger: str | None = "event-1", **metrics: float):
    return registry.register(
        MODEL,
        estimator,
        n_samples=160,
        metrics=metrics or {"accuracy": 0.875},
        training_window=WINDOW,
        trigger_event_id=trigger,
    )


def artifact(registry: ModelRegistry, version: int) -> Path:
    return registry.path / MODEL / str(version) / "model.joblib"


def metadata(registry: ModelRegistry, version: int) -> Path:
    return registry.path / MODEL / str(version) / "metadata.json"


# -- registering and loading ---------------------------------------------------------------------------------


def test_register_numbers_versions_and_records_the_metadata(registry, logistic, tree):
    before = datetime.now(UTC)
    first = register(registry, logistic, "event-1", accuracy=0.875, f1=0.8)
    second = register(registry, tree, "event-2")
    after = datetime.now(UTC)

    assert (first.version, second.version) == (1, 2)
    assert registry.versions(MODEL) == [first, second]
    assert registry.models() == [MODEL]
    assert first.model_id == MODEL
    assert before <= first.created_at <= second.created_at <= after and first.created_at.tzinfo is UTC
    assert first.training_window == {
        "n_samples": 200,
        "first_label_timestamp": "2026-01-01T00:00:00+00:00",  # 01:00 at +01:00, stored in UTC
        "last_label_timestamp": "2026-01-02T00:00:00+00:00",
    }
    assert first.n_samples == 160
    assert first.metrics == {"accuracy": 0.875, "f1": 0.8}
    assert (first.trigger_event_id, second.trigger_event_id) == ("event-1", "event-2")
    assert first.library_versions == {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "river": distribution_version("river"),
        "retrain": retrain.__version__,
    }
    assert first.promoted_at is None
    for info in (first, second):
        data = artifact(registry, info.version).read_bytes()
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.hmac == hmac.new(KEY.encode(), data, hashlib.sha256).hexdigest()
        assert info.artifact_uri == artifact(registry, info.version).resolve().as_uri()
        assert ModelVersionInfo.from_json(metadata(registry, info.version).read_text()) == info
    assert first.sha256 != second.sha256
    assert sorted(p.name for p in (registry.path / MODEL).iterdir()) == ["1", "2"]  # no temporary left behind


def test_load_returns_the_same_model(registry, logistic, tree):
    register(registry, logistic)
    register(registry, tree)

    loaded_logistic = registry.load(MODEL, 1)
    loaded_tree = registry.load(MODEL, 2)

    assert type(loaded_logistic) is LogisticRegression and type(loaded_tree) is DecisionTreeClassifier
    assert np.array_equal(loaded_logistic.predict(X_TEST), logistic.predict(X_TEST))
    assert np.array_equal(loaded_logistic.predict_proba(X_TEST), logistic.predict_proba(X_TEST))
    assert np.array_equal(loaded_tree.predict(X_TEST), tree.predict(X_TEST))


def test_metadata_json_round_trip(registry, tree):
    info = register(registry, tree)
    promoted = registry.promote(MODEL, 1)

    assert ModelVersionInfo.from_json(info.to_json()) == info
    assert ModelVersionInfo.from_json(promoted.to_json()) == promoted
    assert json.loads(promoted.to_json())["promoted_at"] == promoted.promoted_at.isoformat()
    with pytest.raises(ValueError, match="unknown"):
        ModelVersionInfo.from_json(json.dumps({**json.loads(info.to_json()), "extra": 1}))
    with pytest.raises(ValueError, match="timezone-aware"):
        ModelVersionInfo.from_json(json.dumps({**json.loads(info.to_json()), "created_at": "2026-01-01T00:00:00"}))


def test_invalid_arguments_register_nothing(registry, tree):
    with pytest.raises(RegistryError, match="finite"):
        registry.register(
            MODEL, tree, n_samples=1, metrics={"accuracy": float("nan")}, training_window=WINDOW, trigger_event_id=None
        )
    with pytest.raises(RegistryError, match="training_window"):
        registry.register(MODEL, tree, n_samples=1, metrics={}, training_window={"n_samples": 1}, trigger_event_id=None)
    naive = {**WINDOW, "last_label_timestamp": datetime(2026, 1, 2)}
    with pytest.raises(RegistryError, match="timezone-aware"):
        registry.register(MODEL, tree, n_samples=1, metrics={}, training_window=naive, trigger_event_id=None)
    assert registry.versions(MODEL) == [] and registry.models() == []


def test_unknown_versions_are_refused(registry, tree):
    register(registry, tree)
    with pytest.raises(RegistryError, match=r"churn has no version 7 \(versions: \[1\]\)"):
        registry.info(MODEL, 7)
    with pytest.raises(RegistryError, match="no version 1"):
        registry.load("other", 1)
    with pytest.raises(RegistryError, match=">= 1"):
        registry.info(MODEL, 0)
    assert registry.versions("other") == [] and registry.champion("other") is None


# -- champion, promotion, rollback, idempotency --------------------------------------------------------------


def test_promote_champion_and_rollback(registry, logistic, tree):
    register(registry, logistic, "event-1")
    register(registry, tree, "event-2")
    register(registry, tree, "event-3")
    assert registry.champion(MODEL) is None
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback(MODEL)

    promoted = registry.promote(MODEL, 1)
    assert promoted.version == 1 and promoted.promoted_at is not None
    assert registry.info(MODEL, 1).promoted_at == promoted.promoted_at  # written to metadata.json
    assert registry.champion(MODEL) == promoted
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback(MODEL)

    assert registry.promote(MODEL, 2).version == 2
    assert registry.promote(MODEL, 3).version == 3
    assert registry.promote(MODEL, 3) == registry.champion(MODEL)  # promoting the champion again: no new entry
    champion_file = json.loads((registry.path / MODEL / "champion.json").read_text())
    assert champion_file["version"] == 3
    assert [entry["version"] for entry in champion_file["history"]] == [1, 2, 3]
    assert registry.info(MODEL, 2).promoted_at is not None

    assert registry.rollback(MODEL).version == 2
    assert registry.champion(MODEL).version == 2
    assert registry.rollback(MODEL).version == 1
    assert registry.champion(MODEL) == registry.info(MODEL, 1)
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback(MODEL)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote(MODEL, 9)
    assert registry.champion(MODEL).version == 1
    assert sorted(p.name for p in (registry.path / MODEL).iterdir()) == ["1", "2", "3", "champion.json"]


def test_find_by_trigger_finds_the_version_an_event_produced(registry, tree):
    first = register(registry, tree, "event-1")
    second = register(registry, tree, "event-2")
    register(registry, tree, None)

    assert registry.find_by_trigger(MODEL, "event-1") == first
    assert registry.find_by_trigger(MODEL, "event-2") == second
    assert registry.find_by_trigger(MODEL, "event-3") is None
    assert registry.find_by_trigger("other", "event-1") is None


# -- verification before unpickling --------------------------------------------------------------------------


def test_the_evil_payload_runs_code_when_unpickled(tmp_path):
    """Control for the tests below: unverified, this payload would create its marker."""
    marker = tmp_path / "pwned"
    joblib.load(io.BytesIO(evil_payload(marker)))
    assert marker.exists()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails the test if the registry calls joblib.load at all."""

    def forbidden(*args, **kwargs):
        raise AssertionError("joblib.load was called on an unverified artifact")

    monkeypatch.setattr(registry_module.joblib, "load", forbidden)


def test_a_flipped_byte_is_refused(registry, tree, no_unpickling):
    register(registry, tree)
    data = bytearray(artifact(registry, 1).read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact(registry, 1).write_bytes(bytes(data))

    with pytest.raises(ArtifactVerificationError, match=r"churn version 1: the sha256 of model\.joblib does not match"):
        registry.load(MODEL, 1)


def test_a_replaced_artifact_is_refused_before_it_is_unpickled(registry, tree, tmp_path):
    register(registry, tree)
    marker = tmp_path / "pwned"
    artifact(registry, 1).write_bytes(evil_payload(marker))

    with pytest.raises(ArtifactVerificationError, match="sha256") as refused:
        registry.load(MODEL, 1)
    assert "register the model again" in str(refused.value)
    with pytest.raises(ArtifactVerificationError, match="sha256"):
        registry.promote(MODEL, 1)
    assert not marker.exists()
    assert registry.champion(MODEL) is None


def test_metadata_signed_with_another_key_is_refused(registry, tree, tmp_path):
    register(registry, tree)
    marker = tmp_path / "pwned"
    payload = evil_payload(marker)
    artifact(registry, 1).write_bytes(payload)
    forged = json.loads(metadata(registry, 1).read_text())
    forged["sha256"] = hashlib.sha256(payload).hexdigest()
    forged["hmac"] = hmac.new(OTHER_KEY.encode(), payload, hashlib.sha256).hexdigest()
    metadata(registry, 1).write_text(json.dumps(forged))

    with pytest.raises(ArtifactVerificationError, match=r"churn version 1: the HMAC of model\.joblib does not match"):
        registry.load(MODEL, 1)
    assert not marker.exists()


def test_unsigned_metadata_is_refused(registry, tree, tmp_path, no_unpickling):
    register(registry, tree)
    unsigned = json.loads(metadata(registry, 1).read_text())
    unsigned["hmac"] = ""
    metadata(registry, 1).write_text(json.dumps(unsigned))
    with pytest.raises(ArtifactVerificationError, match=r"churn version 1: unusable metadata .*hmac"):
        registry.load(MODEL, 1)

    del unsigned["hmac"]
    metadata(registry, 1).write_text(json.dumps(unsigned))
    with pytest.raises(ArtifactVerificationError, match=re.escape("missing {'hmac'}")):
        registry.load(MODEL, 1)


def test_a_version_copied_under_another_number_is_refused(registry, tree, no_unpickling):
    register(registry, tree)
    shutil.copytree(registry.path / MODEL / "1", registry.path / MODEL / "2")
    with pytest.raises(ArtifactVerificationError, match="it describes churn version 1"):
        registry.load(MODEL, 2)


def test_the_wrong_key_cannot_load(registry, tree, tmp_path):
    register(registry, tree)
    with pytest.raises(ArtifactVerificationError, match="HMAC") as refused:
        ModelRegistry(registry.path, OTHER_KEY).load(MODEL, 1)
    assert "RETRAIN_REGISTRY_HMAC_KEY" in str(refused.value)
    assert np.array_equal(registry.load(MODEL, 1).predict(X_TEST), tree.predict(X_TEST))  # the artifact is intact


@pytest.mark.parametrize("key", [None, "", b""])
def test_without_a_key_nothing_is_saved_or_loaded(registry, tree, key):
    register(registry, tree)
    keyless = ModelRegistry(registry.path, key)
    for attempt in (
        lambda: register(keyless, tree),
        lambda: keyless.load(MODEL, 1),
        lambda: keyless.promote(MODEL, 1),
    ):
        with pytest.raises(RegistryError, match="set RETRAIN_REGISTRY_HMAC_KEY"):
            attempt()
    assert [info.version for info in keyless.versions(MODEL)] == [1]  # reading metadata needs no key


def test_a_short_key_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="shorter than 32 bytes"):
        ModelRegistry(tmp_path, "x" * 31)


# -- model ids and crashes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["../evil", "a/b", "", "a" * 65, ".hidden", "..", "a\n", "-a", "a b"])
def test_invalid_model_ids_are_refused(registry, tree, tmp_path, model_id):
    with pytest.raises(RegistryError, match="invalid model id"):
        registry.register(model_id, tree, n_samples=1, metrics={}, training_window=WINDOW, trigger_event_id=None)
    for read in (registry.versions, registry.champion, lambda m: registry.info(m, 1)):
        with pytest.raises(RegistryError, match="invalid model id"):
            read(model_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the registry's root was created


def test_a_64_character_model_id_is_accepted(registry, tree):
    model_id = "m" + "a" * 62 + "9"
    registry.register(model_id, tree, n_samples=1, metrics={}, training_window=WINDOW, trigger_event_id=None)
    assert registry.models() == [model_id]


def test_a_crash_before_the_rename_leaves_no_version(registry, tree, monkeypatch):
    register(registry, tree, "event-1")

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", crash)
        with pytest.raises(OSError, match="simulated crash"):
            register(registry, tree, "event-2")
    assert [info.version for info in registry.versions(MODEL)] == [1]
    assert sorted(p.name for p in (registry.path / MODEL).iterdir()) == ["1"]  # the staging directory is gone

    # A hard crash gets no chance to clean up: the staging directory stays, hidden and ignored.
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", crash)
        patch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        with pytest.raises(OSError, match="simulated crash"):
            register(registry, tree, "event-2")
    leftovers = [p.name for p in (registry.path / MODEL).iterdir() if p.name != "1"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-2-")
    assert [info.version for info in registry.versions(MODEL)] == [1]
    assert registry.find_by_trigger(MODEL, "event-2") is None

    assert register(registry, tree, "event-2").version == 2
    assert [info.version for info in registry.versions(MODEL)] == [1, 2]


def test_a_version_taken_by_another_writer_moves_to_the_next_number(registry, tree, monkeypatch):
    register(registry, tree, "event-1")
    real_rename = os.rename

    def racing_rename(source, target):
        # Another writer finishes version 2 between our choice of the number and our rename.
        monkeypatch.setattr(os, "rename", real_rename)
        shutil.copytree(registry.path / MODEL / "1", registry.path / MODEL / "2")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", racing_rename)
    info = register(registry, tree, "event-2")
    assert info.version == 3 and info.artifact_uri.endswith("/churn/3/model.joblib")
    assert registry.info(MODEL, 3) == info


# -- settings ------------------------------------------------------------------------------------------------


def test_registry_settings(monkeypatch, tmp_path):
    assert load_settings().registry == RegistrySettings()
    assert RegistrySettings().path == Path(".cache/models") and RegistrySettings().hmac_key is None

    monkeypatch.setenv("RETRAIN_REGISTRY_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("RETRAIN_REGISTRY_HMAC_KEY", KEY)
    settings = load_settings().registry
    assert settings.path == tmp_path / "models"
    assert settings.hmac_key.get_secret_value() == KEY
    assert KEY not in json.dumps(load_settings().model_dump(mode="json"))
    assert ModelRegistry.from_settings(settings).path == (tmp_path / "models").resolve()

    short = "k" * 31
    monkeypatch.setenv("RETRAIN_REGISTRY_HMAC_KEY", short)
    with pytest.raises(ValidationError, match="at least 32 characters") as refused:
        RegistrySettings()
    assert short not in str(refused.value)


# -- signed metadata and champion record ----------------------------------------------------------------------


def test_a_genuine_version_put_in_another_ones_place_is_refused(registry, logistic, tree, no_unpickling):
    register(registry, logistic, "event-1")
    register(registry, tree, "event-2")
    # Version 1's artifact and metadata copied over version 2, its number edited: digests and HMAC still match.
    swapped = json.loads(metadata(registry, 1).read_text())
    swapped["version"] = 2
    artifact(registry, 2).write_bytes(artifact(registry, 1).read_bytes())
    metadata(registry, 2).write_text(json.dumps(swapped))
    assert registry.info(MODEL, 2).sha256 == registry.info(MODEL, 1).sha256
    with pytest.raises(ArtifactVerificationError, match="churn version 2: its metadata does not match its signature"):
        registry.load(MODEL, 2)
    with pytest.raises(ArtifactVerificationError, match="does not match its signature"):
        registry.promote(MODEL, 2)


def test_edited_metrics_are_refused(registry, tree, no_unpickling):
    register(registry, tree)
    edited = json.loads(metadata(registry, 1).read_text())
    edited["metrics"]["accuracy"] = 0.99
    metadata(registry, 1).write_text(json.dumps(edited))
    with pytest.raises(ArtifactVerificationError, match="does not match its signature"):
        registry.load(MODEL, 1)


def test_metadata_without_a_signature_is_listed_but_not_loaded(registry, tree, no_unpickling):
    register(registry, tree)
    old = json.loads(metadata(registry, 1).read_text())
    del old["signature"]
    metadata(registry, 1).write_text(json.dumps(old))
    assert registry.info(MODEL, 1).signature == ""
    with pytest.raises(ArtifactVerificationError, match=r"\(unsigned: written before metadata was signed\)"):
        registry.load(MODEL, 1)


def test_a_champion_record_moved_by_hand_is_refused(registry, logistic, tree):
    register(registry, logistic, "event-1")
    register(registry, tree, "event-2")
    registry.promote(MODEL, 1)
    registry.promote(MODEL, 2)
    path = registry.path / MODEL / "champion.json"
    record = json.loads(path.read_text())
    record["version"], record["history"] = 1, record["history"][:1]  # back to version 1, without `rollback`
    path.write_text(json.dumps(record))
    with pytest.raises(RegistryError, match=r"champion\.json does not match its signature"):
        registry.champion(MODEL)
    keyless = ModelRegistry(registry.path, None)
    assert keyless.champion(MODEL).version == 1  # reading without the key cannot check, and does not refuse
    registry.promote(MODEL, 2)  # a promotion with the key writes a signed record again
    assert registry.champion(MODEL).version == 2


def test_the_retrain_reason_is_recorded_and_signed(registry, tree, no_unpickling):
    info = registry.register(
        MODEL, tree, n_samples=160, metrics={}, training_window=WINDOW, trigger_event_id="e", reason="drift"
    )
    assert registry.info(MODEL, info.version).reason == "drift"
    edited = json.loads(metadata(registry, 1).read_text())
    edited["reason"] = "manual"
    metadata(registry, 1).write_text(json.dumps(edited))
    with pytest.raises(ArtifactVerificationError, match="does not match its signature"):
        registry.load(MODEL, 1)
