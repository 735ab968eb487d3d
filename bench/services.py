"""Services as processes of a benchmark (``python -m retrain.cli <command>``, as the process tests start them).

Each gets its settings as ``RETRAIN_*`` variables, serves ``/metrics`` on a free loopback port and writes its
output to a file; the benchmark reads its counters from ``/metrics`` and its CPU time from ``/proc``.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from retrain.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables that give a service process ``settings``' broker, client, topics, groups and registry."""
    env = {
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": settings.kafka.client,
        "RETRAIN_KAFKA_PROCESSING_GUARANTEE": settings.kafka.processing_guarantee,
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in settings.topics.names().items()},
        "RETRAIN_TOPIC_STREAM_PARTITIONS": str(settings.topics.stream_partitions),
        "RETRAIN_DETECTOR_GROUP_ID": settings.detector.group_id,
        "RETRAIN_TRAINER_GROUP_ID": settings.trainer.group_id,
        "RETRAIN_SCORER_GROUP_ID": settings.scorer.group_id,
        "RETRAIN_REGISTRY_PATH": str(settings.registry.path),
        "RETRAIN_STATE_DIR": str(settings.detector.state_dir),
        "RETRAIN_LOG_LEVEL": "WARNING",
    }
    if settings.registry.hmac_key is not None:
        env["RETRAIN_REGISTRY_HMAC_KEY"] = settings.registry.hmac_key.get_secret_value()
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included), from /proc; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15 of stat


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cores_of(pid: int) -> int:
    """How many cores the scheduler may run the process on."""
    try:
        return len(os.sched_getaffinity(pid))
    except OSError:
        return 0


class ServiceProcess:
    """``retrain <command>`` in a process of its own, with ``/metrics`` on a free port (if the command serves any)."""

    def __init__(self, command: str, env: dict[str, str], log: Path, args: Sequence[str] = ()) -> None:
        self.command = command
        self.port = free_port()
        self.env = {**os.environ, **env, f"RETRAIN_METRICS_{command.upper()}_PORT": str(self.port)}
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "retrain.cli", command, *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of its ``/metrics`` (empty while it is not serving yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 when it is not serving yet)."""
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if not self.running:
            raise RuntimeError(f"retrain {self.command} exited with {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the service commits and exits), SIGKILL if it has not after ``timeout_s``."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float, services: list[ServiceProcess], every_s: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; fail if it does not within ``timeout_s`` or a service dies."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for service in services:
            service.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
