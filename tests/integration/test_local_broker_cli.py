"""`retrain kafka start | status | stop` on a second broker of its own, the way a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.localkafka import LocalBroker, metadata_ok
from retrain.settings import BrokerSettings
from tests.conftest import REPO_ROOT

# No Kafka client of the product is involved: once is enough.
pytestmark = pytest.mark.clients("kafka-python")

PORT = int(os.environ.get("RETRAIN_TEST_CLI_BROKER_PORT", "19192"))


def retrain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrain.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path):
    yield tmp_path / "broker"
    LocalBroker(BrokerSettings(port=PORT, data_dir=tmp_path / "broker", cache_dir=REPO_ROOT / ".cache/kafka")).stop()


def test_start_status_stop(data_dir: Path, bootstrap: str):
    # `bootstrap` first: the session broker has made sure the jars are in the cache.
    where = ["--port", str(PORT), "--data-dir", str(data_dir)]
    distribution = LocalBroker(BrokerSettings(cache_dir=REPO_ROOT / ".cache/kafka")).distribution
    assert distribution.is_complete
    marker_mtime = (distribution.home / ".complete").stat().st_mtime

    started = retrain("kafka", "start", "--fresh", *where)
    assert started.returncode == 0, started.stderr
    assert f"is running at 127.0.0.1:{PORT}" in started.stdout
    assert metadata_ok(f"127.0.0.1:{PORT}")
    assert (data_dir / "logs" / "server.log").stat().st_size > 0, "the broker's own log goes to a file"

    again = retrain("kafka", "start", *where)
    assert again.returncode == 0 and "already running" in again.stdout

    status = retrain("kafka", "status", *where)
    assert status.returncode == 0 and "answers metadata requests" in status.stdout

    stopped = retrain("kafka", "stop", *where)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not metadata_ok(f"127.0.0.1:{PORT}")
    after = retrain("kafka", "status", *where)
    assert after.returncode == 3 and "not running" in after.stdout

    # A warm cache means no Maven run: the jars' completion marker was not rewritten.
    assert (distribution.home / ".complete").stat().st_mtime == marker_mtime


def test_start_refuses_a_port_taken_by_another_process(data_dir: Path, bootstrap: str):
    host, _, port = bootstrap.rpartition(":")
    taken = retrain("kafka", "start", "--port", port, "--data-dir", str(data_dir))
    assert taken.returncode == 1
    assert f"{host}:{port} is already in use by another process" in taken.stderr.replace("localhost", "127.0.0.1")
