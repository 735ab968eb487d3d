"""The registry in MLflow, against a real ``mlflow server`` (SQLite, served artifacts) the fixture starts.

First the registry's promises through MLflow alone (versions, the champion alias, rollback, and refusals of an
artifact, metadata or alias changed behind retrain's back); then the scorer, detector and trainer processes
driving a drift through it on a real broker, and ``retrain models rollback`` swapping the scorer back.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sklearn.tree import DecisionTreeClassifier

from retrain.consumers.decoding import decode_record
from retrain.producers.scored import sea_model, sea_stream
from retrain.registry import ArtifactVerificationError, RegistryError, open_registry
from retrain.registry.mlflow import ALIAS, METADATA_TAG, MlflowRegistry
from retrain.registry.records import RecordVerificationError
from retrain.schemas import ModelUpdatedEvent, RetrainEvent, UpdateOutcome
from retrain.settings import KafkaSettings, RegistrySettings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_producer, produce_requests, read_all
from tests.helpers.mlflow_server import mlflow_server
from tests.helpers.processes import HARNESS_KEY as KEY
from tests.helpers.processes import Detector, free_port, served, wait_for

WINDOW = {"n_samples": 4, "first_label_timestamp": None, "last_label_timestamp": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(its URI, its artifact directory)."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(root) as uri:
        yield uri, root / "artifacts"


def tree(flip: bool = False) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit([[0.0], [1.0]], [1, 0] if flip else [0, 1])


def register(registry: MlflowRegistry, model_id: str, trigger: str, accuracy: float, flip: bool = False):
    return registry.register(
        model_id,
        tree(flip),
        n_samples=4,
        metrics={"accuracy": accuracy},
        training_window=WINDOW,
        trigger_event_id=trigger,
        reason="drift",
    )


def test_versions_champion_alias_and_rollback(server, unique: str):
    uri, _ = server
    registry = open_registry(RegistrySettings(uri=uri.replace("http://", "mlflow://"), hmac_key=KEY))
    assert isinstance(registry, MlflowRegistry) and registry.location == uri
    model = f"churn-{unique}"
    first = register(registry, model, "event-1", 0.75)
    second = register(registry, model, "event-2", 0.875, flip=True)
    assert (first.version, second.version) == (1, 2)
    assert model in registry.models()
    assert [(v.version, v.trigger_event_id, v.metrics["accuracy"]) for v in registry.versions(model)] == [
        (1, "event-1", 0.75),
        (2, "event-2", 0.875),
    ]
    assert registry.find_by_trigger(model, "event-2") == second and registry.find_by_trigger(model, "nope") is None
    assert registry.champion(model) is None

    client = MlflowClient(uri)
    version = client.get_model_version(model, "2")
    assert version.tags["retrain.trigger_event_id"] == "event-2" and version.tags["retrain.sha256"] == second.sha256
    assert version.tags["retrain.reason"] == "drift" and second.reason == "drift"
    assert version.tags["retrain.library.sklearn"] == second.library_versions["sklearn"]
    assert client.get_run(version.run_id).data.metrics["accuracy"] == 0.875
    assert client.get_run(version.run_id).data.params["window.n_samples"] == "4"

    registry.promote(model, 1)
    assert registry.promote(model, 2).version == 2
    assert client.get_model_version_by_alias(model, ALIAS).version == "2"
    assert registry.champion(model).version == 2
    assert registry.load(model, 2).predict([[0.0]]).tolist() == [1]  # the flipped tree, verified and unpickled
    assert registry.rollback(model).version == 1
    assert client.get_model_version_by_alias(model, ALIAS).version == "1"
    assert registry.champion(model).version == 1
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback(model)


class _CreatesFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_artifact_changed_in_the_mlflow_store_is_refused_before_unpickling(server, unique: str, tmp_path: Path):
    uri, artifacts = server
    registry = MlflowRegistry(uri, KEY)
    model = f"fraud-{unique}"
    info = register(registry, model, "event-1", 0.9)
    run_id = MlflowClient(uri).get_model_version(model, "1").run_id
    [stored] = artifacts.glob(f"*/{run_id}/artifacts/model/model.joblib")
    marker = tmp_path / "pwned"
    stored.write_bytes(pickle.dumps(_CreatesFile(marker)))
    with pytest.raises(ArtifactVerificationError, match=f"{model} version 1: the sha256 of model.joblib"):
        registry.load(model, info.version)
    with pytest.raises(ArtifactVerificationError, match="sha256"):
        registry.promote(model, info.version)
    assert not marker.exists() and registry.champion(model) is None


def test_edited_metadata_and_a_moved_alias_are_refused(server, unique: str):
    uri, _ = server
    registry = MlflowRegistry(uri, KEY)
    client = MlflowClient(uri)
    model = f"ads-{unique}"
    register(registry, model, "event-1", 0.75)
    register(registry, model, "event-2", 0.8)
    registry.promote(model, 2)

    client.set_registered_model_alias(model, ALIAS, "1")  # moved in the MLflow UI, not through retrain
    with pytest.raises(RecordVerificationError, match="the 'champion' alias names version 1, its signed"):
        registry.champion(model)
    registry.promote(model, 2)  # the key's holder puts a version in service again
    assert registry.champion(model).version == 2

    metadata = json.loads(client.get_model_version(model, "1").tags[METADATA_TAG])
    metadata["metrics"]["accuracy"] = 0.99
    client.set_model_version_tag(model, "1", METADATA_TAG, json.dumps(metadata))
    with pytest.raises(ArtifactVerificationError, match="its metadata does not match its signature"):
        registry.load(model, 1)


def test_a_version_made_outside_retrain_is_not_one_of_its_versions(server, unique: str):
    uri, _ = server
    registry = MlflowRegistry(uri, KEY)
    model = f"outside-{unique}"
    register(registry, model, "event-1", 0.75)
    client = MlflowClient(uri)
    first = client.get_model_version(model, "1")
    client.create_model_version(model, first.source, run_id=first.run_id)  # e.g. by hand, in the UI
    assert [v.version for v in registry.versions(model)] == [1]
    with pytest.raises(RegistryError, match="was not registered by retrain"):
        registry.info(model, 2)


def test_a_registry_uri_with_credentials_is_refused():
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_USERNAME"):
        RegistrySettings(uri="https://user:secret@mlflow.example.com")


# -- the services through MLflow ------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_the_services_drive_a_drift_through_mlflow_and_rollback_swaps_the_scorer_back(
    server, kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str
):
    uri, _ = server
    topics = created_topics
    model_id = f"mlf-{unique}"
    registry_env = {"RETRAIN_REGISTRY_URI": uri.replace("http://", "mlflow://")}
    scorer_port = free_port()
    services = [
        Detector(
            kafka_settings,
            topics,
            f"scorer-{unique}",
            "scorer",
            RETRAIN_SCORER_GROUP_ID=f"scorer-{unique}",
            RETRAIN_METRICS_SCORER_PORT=str(scorer_port),
            **registry_env,
        ),
        Detector(kafka_settings, topics, f"detector-{unique}"),
        Detector(
            kafka_settings,
            topics,
            f"trainer-{unique}",
            "trainer",
            RETRAIN_TRAINER_GROUP_ID=f"trainer-{unique}",
            RETRAIN_METRICS_TRAINER_PORT=str(free_port()),
            RETRAIN_TRAINER_ESTIMATOR="sklearn.tree.DecisionTreeClassifier",
            RETRAIN_TRAINER_ESTIMATOR_PARAMS='{"max_depth": 6, "random_state": 0}',
            **registry_env,
        ),
    ]
    stream = sea_stream(sea_model(), n=12_000, drift_at=6_000, model_id=model_id, seed=5)
    producer = make_producer(kafka_settings, linger_ms=20)
    try:
        for service in services:
            service.start()
        produce_requests(producer, topics, stream[:3_000])  # a first version from these (cold start)
        wait_for(lambda: served(scorer_port, model_id) >= 1, "the scorer to serve version 1", services)
        produce_requests(producer, topics, stream[3_000:])  # then the drift at 6,000
        wait_for(lambda: served(scorer_port, model_id) >= 2, "the scorer to serve a retrained version", services)
        for service in services[1:]:  # no retrain after this point: the rollback's effect alone is seen
            assert service.terminate() == 0, service.outputs[-1][-3000:]
        registry = MlflowRegistry(uri, KEY)
        in_service = registry.champion(model_id).version
        wait_for(lambda: served(scorer_port, model_id) == in_service, f"version {in_service}", services[:1])

        env = {**services[0].env, **registry_env}
        rollback = subprocess.run(
            [sys.executable, "-m", "retrain.cli", "models", "rollback", model_id],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rollback.returncode == 0, rollback.stdout + rollback.stderr
        back_to = registry.champion(model_id).version
        assert back_to < in_service
        wait_for(lambda: served(scorer_port, model_id) == back_to, f"the scorer to serve {back_to}", services[:1])
        assert services[0].terminate() == 0, services[0].outputs[-1][-3000:]
    finally:
        producer.close()
        for service in services:
            service.kill_if_running()

    versions = registry.versions(model_id)
    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, topics.retrain_events, 1)]
    updates = [decode_record(r, ModelUpdatedEvent) for r in read_all(kafka_settings, topics.model_updates, 1)]
    assert {v.trigger_event_id for v in versions} <= {e.event_id for e in events}
    promoted = [u for u in updates if u.outcome is UpdateOutcome.PROMOTED]
    assert [u.version for u in promoted][:1] == [1] and in_service in [u.version for u in promoted]
    assert updates[-1].outcome is UpdateOutcome.ROLLED_BACK and updates[-1].version == back_to
    assert all(u.artifact_uri.startswith("mlflow-artifacts:/") for u in promoted)
    assert not any(KEY in "".join(service.outputs) for service in services)
    assert os.environ.get("RETRAIN_REGISTRY_URI") is None  # the test's own environment is untouched
