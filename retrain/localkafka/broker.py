"""A real single-node Apache Kafka 4 (KRaft, broker and controller in one JVM), run from its jars.

Everything lives under the broker's data directory: ``server.properties``, ``log4j2.properties``, the KRaft
log directory, the broker's own log files (``logs/server.log``) and a pid file. Nothing is daemonised
through a shell script: the JVM is started directly, the way ``kafka-server-start.sh`` would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from retrain.localkafka.jars import KafkaDistribution, check_java, ensure_distribution
from retrain.settings import BrokerSettings

_LOG4J2 = """\
status = warn
name = retrain-local-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafkarequest.name = kafka.request.logger
logger.kafkarequest.level = WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be started, reached or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class BrokerStatus:
    pid: int | None
    reachable: bool
    bootstrap: str
    data_dir: Path
    log_file: Path

    @property
    def running(self) -> bool:
        return self.pid is not None


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what StorageTool generates)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that a command line would read as an option
            return cluster_id


def is_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def metadata_ok(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when the broker answers a metadata request (the readiness test of ``kafka start``)."""
    from retrain.kafka.kafka_python import answers_metadata

    host, _, port = bootstrap.rpartition(":")
    return is_port_open(host, int(port)) and answers_metadata(bootstrap, timeout_s)


class LocalBroker:
    """Start, stop and inspect the project's own broker; see ``retrain kafka --help``."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        extra_listeners: dict[str, tuple[str, int]] | None = None,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        """``extra_listeners``: name -> (security protocol, port), e.g. {"SECURE": ("SASL_SSL", 19095)}, next to
        the PLAINTEXT one, with ``extra_properties`` for them (keystores, JAAS); the tests' TLS and SASL broker."""
        self.settings = settings
        self.extra_listeners = extra_listeners or {}
        self.extra_properties = extra_properties or {}
        self.distribution = KafkaDistribution(settings.kafka_version, settings.scala_version, settings.cache_dir)
        self.data_dir = settings.resolved_data_dir
        self.config_file = self.data_dir / "server.properties"
        self.log4j_file = self.data_dir / "log4j2.properties"
        self.log_dir = self.data_dir / "logs"
        self.kraft_dir = self.data_dir / "kraft"
        self.pid_file = self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def advertised_host(self) -> str:
        host = self.settings.host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host}:{self.settings.port}"

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, *, fresh: bool = False) -> int:
        """Start the broker in the background and wait until it serves metadata; return its pid."""
        running = self.running_pid()
        if running is not None:
            if fresh:
                raise BrokerError(f"the broker is running (pid {running}); stop it before starting with --fresh")
            return running
        if is_port_open(self.advertised_host, self.settings.port):
            raise BrokerError(
                f"{self.bootstrap} is already in use by another process; stop it, or choose another port "
                "with --port / RETRAIN_BROKER_PORT"
            )
        check_java()
        ensure_distribution(self.distribution)
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self._write_config()
        self._format_storage()
        process = self._spawn()
        self.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
        self._wait_until_ready(process)
        return process.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM: a controlled shutdown; SIGKILL after ``timeout_s``). False if not running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, timeout_s):
            os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self.running_pid()
        reachable = pid is not None and metadata_ok(self.bootstrap)
        return BrokerStatus(pid, reachable, self.bootstrap, self.data_dir, self.log_file)

    def running_pid(self) -> int | None:
        """The pid of this broker's JVM if it is alive (a stale pid file, or a recycled pid, reads as None)."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        is_ours = b"kafka.Kafka" in cmdline and str(self.config_file.resolve()).encode() in cmdline
        return pid if is_ours and not _is_zombie(pid) else None

    # -- steps --------------------------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port, controller_port = self.settings.port, self.settings.resolved_controller_port
        host = self.settings.host
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.advertised_host}:{controller_port}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.advertised_host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.kraft_dir.resolve()),
            "num.partitions": "1",
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The pipeline creates its topics explicitly (`retrain topics create`): a typo must not make one.
            "auto.create.topics.enable": "false",
        }
        for name, (protocol, extra_port) in self.extra_listeners.items():
            properties["listeners"] += f",{name}://{host}:{extra_port}"
            properties["advertised.listeners"] += f",{name}://{self.advertised_host}:{extra_port}"
            properties["listener.security.protocol.map"] += f",{name}:{protocol}"
        properties.update(self.extra_properties)
        text = "".join(f"{key}={value}\n" for key, value in properties.items())
        self.config_file.write_text(text, encoding="utf-8")
        self.log4j_file.write_text(_LOG4J2, encoding="utf-8")

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.settings.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir.resolve()}",
            f"-Dlog4j2.configurationFile={self.log4j_file.resolve()}",
            "-cp",
            self.distribution.classpath,
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.kraft_dir / "meta.properties").exists():
            return
        command = self._java_command(
            "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(self.config_file.resolve())
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage in {self.kraft_dir} failed:\n{result.stdout}{result.stderr}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        console = (self.log_dir / "console.log").open("ab")
        try:
            return subprocess.Popen(
                self._java_command("kafka.Kafka", str(self.config_file.resolve())),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `retrain kafka start`; Ctrl-C in that shell does not reach it
            )
        finally:
            console.close()

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {process.returncode} during start-up; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if metadata_ok(self.bootstrap, timeout_s=2.0):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"the broker did not answer a metadata request within {self.settings.start_timeout_s:.0f}s; "
            f"last lines of {self.log_file}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        for path in (self.log_file, self.log_dir / "console.log"):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        return "(no log output)"


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _is_zombie(pid):
            _reap(pid)
            return True
        time.sleep(0.1)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
