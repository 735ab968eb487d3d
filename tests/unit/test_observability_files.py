"""The scrape configuration, the alert rules and the Grafana dashboard: valid, and about metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from retrain.consumers.metrics import DetectorMetrics, ScorerMetrics, TrainerMetrics
from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "retrain.json"
METRIC_NAME = re.compile(r"\bretrain_[a-z_]+\b")


def exposed_series() -> set[str]:
    """Every sample name the services can expose (counters with _total, histograms with _bucket ...)."""
    registries = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()  # shared names: one registry each
    for metrics, registry in zip((DetectorMetrics, TrainerMetrics, ScorerMetrics), registries, strict=True):
        metrics(registry)
    names = set()
    for reg in registries:
        for family in reg.collect():
            names.add(family.name)
            names.update(
                {
                    f"{family.name}_total",
                    f"{family.name}_bucket",
                    f"{family.name}_count",
                    f"{family.name}_sum",
                    f"{family.name}_created",
                }
            )
    return names


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make test` installs Debian's prometheus package")
    return path


@pytest.mark.parametrize(
    ("what", "file", "success"),
    [("config", "prometheus.yml", "SUCCESS: 1 rule files found"), ("rules", "alerts.yml", "SUCCESS: 5 rules found")],
)
def test_promtool_accepts_the_configuration_and_the_rules(promtool: str, what: str, file: str, success: str):
    result = subprocess.run(
        [promtool, "check", what, file], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert success in result.stdout + result.stderr


def test_alerts_cover_drift_failed_retrains_lag_and_missing_labels():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {"DriftDetected", "RetrainFailed", "ConsumerLagHigh", "NoLabelsArriving"} <= {r["alert"] for r in rules}


@pytest.mark.parametrize("path", [PROMETHEUS_DIR / "alerts.yml", DASHBOARD], ids=lambda p: p.name)
def test_every_metric_named_is_one_the_services_expose(path):
    named = set(METRIC_NAME.findall(path.read_text()))
    assert named, f"{path.name} names no retrain_ metric"
    unknown = named - exposed_series()
    assert not unknown, f"{path.name} queries metrics no service exposes: {sorted(unknown)}"


def test_dashboard_has_the_panels_the_operators_need():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for needed in ("records consumed", "lag", "rolling accuracy", "drift detections", "fit duration", "per stage"):
        assert needed in titles, f"no panel about {needed}: {titles}"
    annotations = {a["name"] for a in dashboard["annotations"]["list"]}
    assert annotations == {"Retrain events", "Model updates"}
