"""The model registry in MLflow (``RETRAIN_REGISTRY_URI`` ``mlflow://host:port`` or an ``http(s)`` tracking URI).

Each model is an MLflow registered model of the same name (tagged ``retrain.model``); each trained challenger is
a run in the ``retrain`` experiment (its artifact under ``model/``, its metrics and window as run metrics and
params) and a model version with the trigger event, reason and library versions as tags, plus
``retrain.metadata``: the signed :class:`ModelVersionInfo`. The version in service is the registered model's
``champion`` alias; ``retrain.champion``, a registered-model tag, is the signed record of the promotions behind
it, which rollback walks back. A version is usable once its ``retrain.metadata`` tag is set (the last step of
registering), so a crash mid-registration leaves a version nothing reads. Artifacts are verified (sha256, HMAC,
signed metadata) before they are unpickled, as with the file registry.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.registry.records import (
    ADVICE,
    ArtifactVerificationError,
    ModelVersionInfo,
    RecordVerificationError,
    RegistryError,
    Signer,
    check_model_id,
    unpickle,
)

log = logging.getLogger(__name__)

EXPERIMENT = "retrain"
ALIAS = "champion"
MODEL_TAG = "retrain.model"
METADATA_TAG = "retrain.metadata"
CHAMPION_TAG = "retrain.champion"
ARTIFACT_PATH = "model"
ARTIFACT_FILE = "model.joblib"
HISTORY_KEPT = 50  # promotions remembered for rollback


class MlflowRegistry:
    """Registered models and versions on an MLflow tracking server, signed with the registry's HMAC key."""

    def __init__(self, tracking_uri: str, hmac_key: str | bytes | None) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError as error:
            raise RegistryError(
                "RETRAIN_REGISTRY_URI names an MLflow server, but mlflow is not installed: "
                "pip install 'kafka-retrain[mlflow]'"
            ) from error
        # MLflow's client retries a request 7 times over about two minutes by default: a service would stall that
        # long on a registry that is away. Fewer, shorter tries unless the operator chose otherwise.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        # MLflow logs a line (with a link) for every run and version it makes: retrain logs its own.
        logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLogger("mlflow").level))
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.signer = Signer(hmac_key)
        self._experiment_id: str | None = None

    @property
    def location(self) -> str:
        return self.tracking_uri

    # -- reading ---------------------------------------------------------------------------------------------

    def models(self) -> list[str]:
        found: list[str] = []
        token = None
        while True:
            page = self._call("list models", self.client.search_registered_models, max_results=1000, page_token=token)
            found.extend(model.name for model in page if model.tags.get(MODEL_TAG) == "true")
            token = page.token
            if not token:
                return sorted(found)

    def versions(self, model_id: str) -> list[ModelVersionInfo]:
        check_model_id(model_id, error=RegistryError)
        found = self._call(
            f"list the versions of {model_id}", self.client.search_model_versions, filter_string=f"name='{model_id}'"
        )
        infos = [self._info_of(version) for version in found if METADATA_TAG in version.tags]
        return sorted(infos, key=lambda info: info.version)

    def info(self, model_id: str, version: int) -> ModelVersionInfo:
        check_model_id(model_id, error=RegistryError)
        found = self._model_version(model_id, version)
        if METADATA_TAG not in found.tags:
            raise RegistryError(f"{model_id} version {version} was not registered by retrain (no {METADATA_TAG} tag)")
        return self._info_of(found)

    def find_by_trigger(self, model_id: str, trigger_event_id: str) -> ModelVersionInfo | None:
        return next((info for info in self.versions(model_id) if info.trigger_event_id == trigger_event_id), None)

    def champion(self, model_id: str) -> ModelVersionInfo | None:
        record = self._champion_record(model_id)
        if record is None:
            return None
        aliased = self._aliased_version(model_id)
        if aliased != record["version"]:
            raise RecordVerificationError(
                f"{model_id}: the {ALIAS!r} alias names version {aliased}, its signed champion record version "
                f"{record['version']} (the alias was moved outside retrain); use `retrain models promote`"
            )
        return self.info(model_id, record["version"])

    def load(self, model_id: str, version: int) -> Any:
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
        template, artifact = self.signer.new_version(
            model_id,
            estimator,
            n_samples=n_samples,
            metrics=dict(metrics),
            training_window=dict(training_window),
            trigger_event_id=trigger_event_id,
            reason=reason,
        )
        self._ensure_model(model_id)
        run = self._run_with_artifact(model_id, trigger_event_id, artifact)
        run_id = run.info.run_id
        self._log_run(run_id, template)
        source = f"{run.info.artifact_uri}/{ARTIFACT_PATH}"
        tags = {
            "retrain.trigger_event_id": trigger_event_id or "",
            "retrain.reason": reason or "",
            "retrain.n_samples": str(n_samples),
            "retrain.sha256": template.sha256,
            **{f"retrain.library.{name}": value or "" for name, value in template.library_versions.items()},
        }
        created = self._call(
            f"register a version of {model_id}",
            self.client.create_model_version,
            model_id,
            source,
            run_id=run_id,
            tags=tags,
        )
        info = self.signer.sign(
            replace(template, version=int(created.version), artifact_uri=f"{source}/{ARTIFACT_FILE}")
        )
        # The last step: from here the version is usable (and found by find_by_trigger).
        self._call(
            "sign the version",
            self.client.set_model_version_tag,
            model_id,
            created.version,
            METADATA_TAG,
            json.dumps(info.to_dict(), separators=(",", ":")),
        )
        log.info("registered %s version %d in MLflow (sha256 %s)", model_id, info.version, info.sha256)
        return info

    def promote(self, model_id: str, version: int) -> ModelVersionInfo:
        info, _ = self._verified(model_id, version)
        try:
            record = self._champion_record(model_id)
        except RecordVerificationError as error:  # the key's holder puts a version in service: a new record
            log.warning("%s; its promotion history starts again with version %d", error, version)
            record = None
        history = record["history"] if record is not None else []
        if record is not None and record["version"] == version and self._aliased_version(model_id) == version:
            return replace(info, promoted_at=_time(history[-1]["promoted_at"]))
        now = datetime.now(UTC)
        history = [*history, {"version": version, "promoted_at": now.isoformat()}]
        self._put_champion(model_id, history)
        log.info("promoted %s version %d (MLflow alias %r)", model_id, version, ALIAS)
        return replace(info, promoted_at=now)

    def rollback(self, model_id: str) -> ModelVersionInfo:
        record = self._champion_record(model_id)
        if record is None or len(record["history"]) < 2:
            raise RegistryError(f"{model_id} has no earlier promoted version to roll back to")
        history = record["history"][:-1]
        info, _ = self._verified(model_id, history[-1]["version"])
        self._put_champion(model_id, history)
        log.info("rolled %s back from version %d to %d", model_id, record["version"], info.version)
        return replace(info, promoted_at=_time(history[-1]["promoted_at"]))

    # -- internals -------------------------------------------------------------------------------------------

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """An MLflow client call; its failures are RegistryErrors that say what was being done."""
        from mlflow.exceptions import MlflowException

        try:
            return function(*args, **kwargs)
        except MlflowException as error:
            raise RegistryError(f"MLflow at {self.tracking_uri}: cannot {action}: {error.message}") from error
        except OSError as error:
            raise RegistryError(f"MLflow at {self.tracking_uri}: cannot {action}: {error}") from error

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self._call("find the experiment", self.client.get_experiment_by_name, EXPERIMENT)
            if found is None:
                try:
                    self._experiment_id = self._call("create the experiment", self.client.create_experiment, EXPERIMENT)
                except RegistryError:  # another instance created it meanwhile
                    found = self._call("find the experiment", self.client.get_experiment_by_name, EXPERIMENT)
                    if found is None:
                        raise
                    self._experiment_id = found.experiment_id
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def _ensure_model(self, model_id: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(model_id)
        except MlflowException:
            try:
                self.client.create_registered_model(model_id, tags={MODEL_TAG: "true"})
            except MlflowException:  # created by another instance meanwhile
                self._call("tag the model", self.client.set_registered_model_tag, model_id, MODEL_TAG, "true")
            return
        if model.tags.get(MODEL_TAG) != "true":
            self._call("tag the model", self.client.set_registered_model_tag, model_id, MODEL_TAG, "true")

    def _run_with_artifact(self, model_id: str, trigger_event_id: str | None, artifact: bytes) -> Any:
        """A new run of the experiment, holding ``artifact`` (still open: :meth:`_log_run` ends it)."""
        run = self._call(
            "start a run",
            self.client.create_run,
            self._experiment(),
            tags={"retrain.model_id": model_id, "retrain.trigger_event_id": trigger_event_id or ""},
            run_name=f"{model_id}-{trigger_event_id or 'manual'}",
        )
        with tempfile.TemporaryDirectory(prefix="retrain-register-") as staging:
            path = Path(staging) / ARTIFACT_FILE
            path.write_bytes(artifact)
            self._call("upload the artifact", self.client.log_artifact, run.info.run_id, str(path), ARTIFACT_PATH)
        return run

    def _log_run(self, run_id: str, info: ModelVersionInfo) -> None:
        from mlflow.entities import Metric, Param

        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        params = [Param(f"window.{name}", str(value)) for name, value in info.training_window.items()]
        params += [Param(f"library.{name}", str(value)) for name, value in info.library_versions.items()]
        metrics = [Metric(name, float(value), now_ms, 0) for name, value in info.metrics.items()]
        self._call("log the run", self.client.log_batch, run_id, metrics=metrics, params=params)
        self._call("end the run", self.client.update_run, run_id, status="FINISHED")  # set_terminated prints a link

    def _model_version(self, model_id: str, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(model_id, str(version))
        except MlflowException as error:
            raise RegistryError(f"{model_id} has no version {version} in MLflow ({error.message})") from error

    def _info_of(self, version: Any) -> ModelVersionInfo:
        try:
            info = ModelVersionInfo.from_json(version.tags[METADATA_TAG])
        except (ValueError, TypeError) as error:
            raise RegistryError(
                f"{version.name} version {version.version}: invalid {METADATA_TAG} ({error})"
            ) from error
        if (info.model_id, info.version) != (version.name, int(version.version)):
            # Not refused here (reading needs no key); loading checks the signature, which covers both.
            log.warning(
                "%s version %s: its metadata describes %s version %d",
                version.name,
                version.version,
                info.model_id,
                info.version,
            )
        return info

    def _verified(self, model_id: str, version: int) -> tuple[ModelVersionInfo, bytes]:
        what = f"{model_id} version {version}"
        self.signer.require(f"verify {what}")
        found = self._model_version(model_id, version)
        try:
            info = ModelVersionInfo.from_json(found.tags[METADATA_TAG])
        except (KeyError, ValueError, TypeError) as error:
            raise ArtifactVerificationError(f"{what}: unusable {METADATA_TAG} ({error}); {ADVICE}") from error
        if (info.model_id, info.version) != (model_id, version):
            raise ArtifactVerificationError(
                f"{what}: its metadata describes {info.model_id} version {info.version}; {ADVICE}"
            )
        with tempfile.TemporaryDirectory(prefix="retrain-load-") as staging:
            path = self._call(
                f"download {what}",
                self.client.download_artifacts,
                found.run_id,
                f"{ARTIFACT_PATH}/{ARTIFACT_FILE}",
                staging,
            )
            data = Path(path).read_bytes()
        self.signer.check(info, data, ARTIFACT_FILE)
        return info, data

    def _aliased_version(self, model_id: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(model_id, ALIAS).version)
        except MlflowException:
            return None

    def _champion_record(self, model_id: str) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException

        check_model_id(model_id, error=RegistryError)
        try:
            model = self.client.get_registered_model(model_id)
        except MlflowException:
            return None
        text = model.tags.get(CHAMPION_TAG)
        if text is None:
            return None
        try:
            record = json.loads(text)
            history = record["history"]
            valid = (
                record["model_id"] == model_id
                and isinstance(history, list)
                and history
                and all(isinstance(entry.get("version"), int) for entry in history)
                and record["version"] == history[-1]["version"]
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise RegistryError(f"{model_id}: its {CHAMPION_TAG} tag is inconsistent; promote a version again")
        self.signer.check_record(record, f"{model_id}: the {CHAMPION_TAG} tag")
        return record

    def _put_champion(self, model_id: str, history: list[dict[str, Any]]) -> None:
        history = history[-HISTORY_KEPT:]  # a registered-model tag holds at most 5,000 characters
        version = history[-1]["version"]
        record = self.signer.sign_record(
            {"model_id": model_id, "version": version, "history": history}, f"promote {model_id}"
        )
        self._call(
            "record the champion",
            self.client.set_registered_model_tag,
            model_id,
            CHAMPION_TAG,
            json.dumps(record, separators=(",", ":")),
        )
        self._call("move the champion alias", self.client.set_registered_model_alias, model_id, ALIAS, str(version))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
