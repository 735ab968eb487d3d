"""The deployment files agree with ``retrain/settings/``.

Docker is not needed: ``docker-compose.yml``, ``prometheus/prometheus.yml`` and the ``Dockerfile`` are parsed,
and every expectation (metrics ports, the Kafka version, the names of the variables) is derived from the
settings classes. Changing a default, or misspelling a variable, without updating the files fails here.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings

from retrain import settings as settings_module
from retrain.settings import BrokerSettings, KafkaSettings, MetricsSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_FILE = REPO_ROOT / "prometheus" / "prometheus.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
PYPROJECT = REPO_ROOT / "pyproject.toml"

KAFKA_SERVICE = "kafka"
LOOPBACK = "127.0.0.1"

# Every settings class of retrain/settings/, each reading the variables with its own prefix.
SETTINGS_CLASSES: list[type[BaseSettings]] = [
    cls
    for cls in vars(settings_module).values()
    if inspect.isclass(cls) and issubclass(cls, BaseSettings) and cls.__module__.startswith(settings_module.__name__)
]

# The services that serve /metrics, each with the default of its `<service>_port` field of MetricsSettings.
METRICS_PORTS: dict[str, int] = {
    name.removesuffix("_port"): field.default
    for name, field in MetricsSettings.model_fields.items()
    if name.endswith("_port")
}
MLFLOW_SERVICE = "mlflow"
EXPECTED_SERVICES = {KAFKA_SERVICE, "topics", "prometheus", MLFLOW_SERVICE, *METRICS_PORTS}
REGISTRY_USERS = ("trainer", "scorer")
# The services that talk to Kafka through the retrain package.
KAFKA_CLIENT_SERVICES = ["topics", *METRICS_PORTS]


# -- reading the files --------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}; it has {sorted(services)}"
    return services[name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from either the mapping or the list form."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) for each published port, short or long syntax."""
    ports = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            ports.append((str(entry.get("host_ip", "")), str(entry.get("published", "")), str(entry["target"])))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        host_ip = ":".join(parts[:-2])  # empty when the mapping names no address
        host_port = parts[-2] if len(parts) >= 2 else ""
        ports.append((host_ip, host_port, parts[-1]))
    return ports


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


# -- settings fields ----------------------------------------------------------------------------------------


def env_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config['env_prefix']}{field}".upper()


KNOWN_VARIABLES = {env_name(cls, field) for cls in SETTINGS_CLASSES for field in cls.model_fields}


def settings_fields_for(variable: str) -> list[tuple[type[BaseSettings], str]]:
    """The (settings class, field) pairs that read ``variable``; empty when no setting does."""
    return [
        (cls, field)
        for cls in SETTINGS_CLASSES
        for field in cls.model_fields
        if env_name(cls, field) == variable.upper()
    ]


def retrain_variables(svc: dict[str, Any]) -> dict[str, str]:
    return {key: value for key, value in environment(svc).items() if key.upper().startswith("RETRAIN_")}


# -- tests --------------------------------------------------------------------------------------------------


def test_the_settings_classes_are_found() -> None:
    prefixes = {cls.model_config["env_prefix"] for cls in SETTINGS_CLASSES}
    assert {"RETRAIN_KAFKA_", "RETRAIN_METRICS_", "RETRAIN_BROKER_"} <= prefixes, prefixes
    assert METRICS_PORTS, "MetricsSettings has no <service>_port fields"


def test_every_service_exists() -> None:
    services = compose()["services"]
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_a_misspelt_variable_matches_no_setting() -> None:
    assert settings_fields_for("RETRAIN_KAFKA_BOOTSTRAP_SERVERS") == [(KafkaSettings, "bootstrap_servers")]
    assert settings_fields_for("RETRAIN_KAFKA_BOOTSTRAP_SERVER") == []
    assert settings_fields_for("RETRAIN_METRICS_KAFKA_BOOTSTRAP_SERVERS") == []


def test_every_retrain_variable_is_a_setting() -> None:
    unknown = []
    for name, svc in compose()["services"].items():
        for variable in retrain_variables(svc):
            if not settings_fields_for(variable):
                guess = difflib.get_close_matches(variable.upper(), KNOWN_VARIABLES, n=1)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                unknown.append(f"{name}: {variable}{hint}")
    assert not unknown, (
        "these variables are read by no settings class in retrain/settings/, so they would be silently "
        "ignored: " + "; ".join(unknown)
    )


@pytest.mark.parametrize(("name", "port"), METRICS_PORTS.items(), ids=list(METRICS_PORTS))
def test_metrics_port_is_the_settings_default(name: str, port: int) -> None:
    env = environment(service(name))
    variable = env_name(MetricsSettings, f"{name}_port")
    assert env.get(variable) == str(port), (
        f"{name}: {variable} is {env.get(variable)!r}, but MetricsSettings.{name}_port defaults to {port}"
    )
    host_variable = env_name(MetricsSettings, "host")
    assert env.get(host_variable) == "0.0.0.0", (
        f"{name}: {host_variable} must be 0.0.0.0 so Prometheus reaches /metrics over the compose network "
        "(the port is published on the host's loopback only)"
    )
    assert (LOOPBACK, str(port), str(port)) in published_ports(service(name)), (
        f"{name}: expected the port mapping {LOOPBACK}:{port}:{port}, found {service(name).get('ports')}"
    )


def test_published_ports_bind_loopback_only() -> None:
    exposed = [
        f"{name}: {host_ip or '<every interface>'}:{host_port} -> {container_port}"
        for name, svc in compose()["services"].items()
        for host_ip, host_port, container_port in published_ports(svc)
        if host_ip != LOOPBACK
    ]
    assert not exposed, f"publish ports on {LOOPBACK} only; these are reachable from other machines: {exposed}"


def test_prometheus_scrapes_every_service_at_its_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    mounts = {volume.split(":")[1] for volume in service("prometheus").get("volumes", [])}
    for rule_file in config.get("rule_files", []):
        assert (PROMETHEUS_FILE.parent / rule_file).is_file(), f"prometheus.yml names a missing rule file {rule_file}"
        assert f"/etc/prometheus/{rule_file}" in mounts, f"compose does not mount {rule_file} into Prometheus"
    scraped = {
        job["job_name"]: sorted(target for static in job["static_configs"] for target in static["targets"])
        for job in config["scrape_configs"]
    }
    expected = {name: [f"{name}:{port}"] for name, port in METRICS_PORTS.items()}
    assert scraped == expected, f"prometheus.yml scrapes {scraped}; MetricsSettings defaults give {expected}"


def test_kafka_clients_bootstrap_from_the_internal_advertised_listener() -> None:
    env = environment(service(KAFKA_SERVICE))
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    bound = listeners(env["KAFKA_LISTENERS"])
    internal = [name for name, (host, _) in advertised.items() if host == KAFKA_SERVICE]
    assert len(internal) == 1, f"expected one advertised listener on host {KAFKA_SERVICE!r}: {advertised}"
    internal_name = internal[0]
    internal_address = "{}:{}".format(*advertised[internal_name])

    variable = env_name(KafkaSettings, "bootstrap_servers")
    for name in KAFKA_CLIENT_SERVICES:
        bootstrap = environment(service(name)).get(variable)
        assert bootstrap == internal_address, (
            f"{name}: {variable} is {bootstrap!r}, but the broker advertises {internal_address} "
            f"({internal_name}) to the other containers"
        )

    assert bound.get(internal_name, (None, None))[1] == advertised[internal_name][1], (
        f"listener {internal_name} is advertised on port {advertised[internal_name][1]} but bound as "
        f"{bound.get(internal_name)}"
    )
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == internal_name


def test_kafka_listeners_are_consistent() -> None:
    env = environment(service(KAFKA_SERVICE))
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    assert set(bound) <= set(protocols), f"listeners without a security protocol: {set(bound) - set(protocols)}"
    assert set(advertised) <= set(bound) - {controller}, (
        f"advertised listeners {sorted(advertised)} must be bound broker listeners {sorted(bound)}"
    )
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@{KAFKA_SERVICE}:{bound[controller][1]}"
    assert {"broker", "controller"} == set(env["KAFKA_PROCESS_ROLES"].split(","))
    assert env.get("CLUSTER_ID"), "CLUSTER_ID formats the KRaft storage on first start"


def test_the_host_reaches_kafka_at_the_default_bootstrap_port() -> None:
    env = environment(service(KAFKA_SERVICE))
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    external = {name: address for name, address in advertised.items() if address[0] != KAFKA_SERVICE}
    assert len(external) == 1, f"expected one advertised listener for the host: {advertised}"
    (host, port), *_ = external.values()

    default_bootstrap = KafkaSettings.model_fields["bootstrap_servers"].default
    default_port = int(default_bootstrap.split(",")[0].rpartition(":")[2])
    assert port == default_port, (
        f"the broker advertises port {port} to the host, but RETRAIN_KAFKA_BOOTSTRAP_SERVERS defaults to "
        f"{default_bootstrap}"
    )
    assert host in (LOOPBACK, "localhost"), f"the port is published on {LOOPBACK}; advertise it there, not {host}"
    assert (LOOPBACK, str(port), str(port)) in published_ports(service(KAFKA_SERVICE))


def test_kafka_image_is_the_broker_version() -> None:
    version = BrokerSettings.model_fields["kafka_version"].default
    image = service(KAFKA_SERVICE)["image"]
    assert image == f"apache/kafka:{version}", (
        f"kafka runs {image}, but BrokerSettings.kafka_version (the local broker) is {version}"
    )


def test_start_up_order() -> None:
    topics = service("topics")
    assert topics["command"] == ["topics", "create"]
    assert topics["restart"] == "no", "topics is one-shot; restart must be the string 'no'"
    assert topics["depends_on"][KAFKA_SERVICE]["condition"] == "service_healthy"
    assert "kafka-broker-api-versions.sh" in " ".join(service(KAFKA_SERVICE)["healthcheck"]["test"])

    for name in ["topics", *METRICS_PORTS]:
        build = service(name).get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", f"{name} must be built from the repository's Dockerfile, got build: {build!r}"
    for name in METRICS_PORTS:
        svc = service(name)
        assert svc["command"] == [name], f"{name} runs {svc['command']!r}"
        expected = {"topics": {"condition": "service_completed_successfully"}}
        if name in REGISTRY_USERS:  # and after the registry answers
            expected[MLFLOW_SERVICE] = {"condition": "service_healthy"}
        assert svc["depends_on"] == expected, f"{name} must start after {sorted(expected)}: {svc['depends_on']!r}"


def mlflow_option(name: str) -> str:
    command = service(MLFLOW_SERVICE)["command"]
    return command[command.index(name) + 1]


def test_mlflow_serves_the_registry_from_a_named_volume_on_loopback() -> None:
    mlflow = service(MLFLOW_SERVICE)
    assert mlflow["entrypoint"] == ["mlflow"] and mlflow["command"][0] == "server"
    build = mlflow.get("build")
    assert (build.get("context") if isinstance(build, dict) else build) == ".", "the image with the mlflow extra"
    assert "mlflow-data" in (compose().get("volumes") or {}), "the top-level volumes must declare 'mlflow-data'"
    assert "mlflow-data:/var/lib/retrain/mlflow" in mlflow.get("volumes", [])
    assert mlflow_option("--backend-store-uri") == "sqlite:////var/lib/retrain/mlflow/mlflow.db"
    assert mlflow_option("--artifacts-destination").startswith("/var/lib/retrain/mlflow/")
    port = mlflow_option("--port")
    assert (LOOPBACK, port, port) in published_ports(mlflow)
    assert f"127.0.0.1:{port}/health" in " ".join(mlflow["healthcheck"]["test"])
    made = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN" and "mkdir" in arguments]
    assert any("/var/lib/retrain/mlflow" in run and "chown -R retrain:retrain /var/lib/retrain" in run for run in made)
    installs = [
        arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN" and "pip" in arguments
    ]
    assert any("'.[mlflow]'" in run for run in installs), "the image installs the mlflow extra"


def test_detector_keeps_its_state_stores_in_a_named_volume_the_image_lets_it_write() -> None:
    assert "detector-state" in (compose().get("volumes") or {}), "the top-level volumes must declare 'detector-state'"
    assert "detector-state:/var/lib/retrain/state" in service("detector").get("volumes", [])
    assert environment(service("detector"))["RETRAIN_DETECTOR_STATE_DIR"] == "/var/lib/retrain/state"
    made = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN" and "mkdir" in arguments]
    assert any("/var/lib/retrain/state" in run and "chown -R retrain:retrain /var/lib/retrain" in run for run in made)


def test_scorer_reads_the_trainers_registry_in_mlflow_with_the_same_key() -> None:
    trainer, scorer = environment(service("trainer")), environment(service("scorer"))
    for name in ("uri", "hmac_key"):
        variable = env_name(settings_module.RegistrySettings, name)
        assert variable in trainer, f"the trainer sets no {variable}"
        assert scorer.get(variable) == trainer[variable], f"scorer and trainer disagree on {variable}"
    uri = trainer[env_name(settings_module.RegistrySettings, "uri")]
    backend, tracking = settings_module.RegistrySettings(uri=uri).backend()
    assert (backend, tracking) == ("mlflow", f"http://{MLFLOW_SERVICE}:{mlflow_option('--port')}")
    assert f"{MLFLOW_SERVICE}:{mlflow_option('--port')}" in mlflow_option("--allowed-hosts").split(",")
    for name in REGISTRY_USERS:  # nothing shared on disk: the registry is reached over the network
        assert not any("retrain/models" in volume for volume in service(name).get("volumes", [])), name


def test_dockerfile_runs_the_retrain_cli_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    assert entrypoints[-1].startswith("["), f"use the exec form of ENTRYPOINT, got {entrypoints[-1]}"
    assert json.loads(entrypoints[-1]) == ["retrain"]

    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert "retrain" in scripts, f"pyproject.toml installs no `retrain` command: {scripts}"

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the Dockerfile never switches away from root (no USER)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"the image runs as {users[-1]}"


@pytest.mark.parametrize("name", KAFKA_CLIENT_SERVICES)
def test_settings_read_the_compose_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a service's variables set, the settings classes hold exactly the values in docker-compose.yml."""
    for variable in list(os.environ):
        if variable.upper().startswith("RETRAIN_"):
            monkeypatch.delenv(variable)
    variables = retrain_variables(service(name))
    assert variables, f"{name} sets no RETRAIN_* variables"
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)

    for variable, raw in variables.items():
        for cls, field in settings_fields_for(variable):
            expected = TypeAdapter(cls.model_fields[field].annotation).validate_python(raw)
            actual = getattr(cls(), field)
            assert actual == expected, f"{name}: {variable}={raw!r} gives {cls.__name__}.{field} = {actual!r}"
