"""Resolve Apache Kafka's broker jars from Maven Central into a local cache, with ``mvn``.

The cache holds one directory per Kafka version, ``<cache>/dist/<version>/libs``, plus Maven's own local
repository (``<cache>/m2``) so the project never writes to ``~/.m2``. A ``.complete`` marker is written only
after every jar is copied: a warm cache costs no download and no Maven run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Kafka's distribution logs through SLF4J 1.x; this binding routes it into log4j2, which writes the log file.
_LOG4J_SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
DOCKER_HINT = (
    "Without Java 17+ and Maven, run Kafka with Docker instead: `docker compose up -d kafka` "
    "(see docker-compose.yml), and point RETRAIN_KAFKA_BOOTSTRAP_SERVERS at it."
)


class BrokerToolingError(RuntimeError):
    """Java or Maven is missing or too old, or Maven could not resolve the jars."""


@dataclass(frozen=True)
class KafkaDistribution:
    version: str
    scala_version: str
    cache_dir: Path

    @property
    def home(self) -> Path:
        return self.cache_dir / "dist" / f"kafka_{self.scala_version}-{self.version}"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def is_complete(self) -> bool:
        return (self.home / ".complete").exists()

    @property
    def classpath(self) -> str:
        return str(self.libs.resolve() / "*")


def java_major_version(java: str = "java") -> int:
    """The major version of the ``java`` on PATH; raise :class:`BrokerToolingError` when there is none."""
    executable = shutil.which(java)
    if executable is None:
        raise BrokerToolingError(f"Java 17 or newer is needed to run the local Kafka broker; none found. {DOCKER_HINT}")
    result = subprocess.run([executable, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise BrokerToolingError(f"could not read the Java version from `java -version`: {result.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> None:
    major = java_major_version()
    if major < 17:
        raise BrokerToolingError(f"Kafka 4 needs Java 17 or newer; `java` is version {major}. {DOCKER_HINT}")


def _pom(distribution: KafkaDistribution) -> str:
    group, artifact, version = _LOG4J_SLF4J_BINDING
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.retrain</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>{distribution.version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{distribution.scala_version}</artifactId>
      <version>{distribution.version}</version>
    </dependency>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def ensure_distribution(distribution: KafkaDistribution, *, log: Path | None = None) -> bool:
    """Make sure the broker's jars are in the cache; return True if they had to be downloaded."""
    if distribution.is_complete:
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerToolingError(
            f"Maven (`mvn`) is needed once to download Kafka {distribution.version}'s jars; none found. {DOCKER_HINT}"
        )
    if distribution.libs.exists():
        shutil.rmtree(distribution.libs)
    distribution.home.mkdir(parents=True, exist_ok=True)
    pom = distribution.home / "pom.xml"
    pom.write_text(_pom(distribution), encoding="utf-8")
    command = [
        mvn,
        "--batch-mode",
        "--no-transfer-progress",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={(distribution.cache_dir / 'm2').resolve()}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={distribution.libs.resolve()}",
        "-DincludeScope=runtime",
    ]
    log_path = log or distribution.home / "mvn.log"
    with log_path.open("w", encoding="utf-8") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise BrokerToolingError(
            f"Maven could not resolve org.apache.kafka:kafka_{distribution.scala_version}:"
            f"{distribution.version} (exit {result.returncode}); full log in {log_path}:\n{tail}"
        )
    if not any(distribution.libs.glob(f"kafka_{distribution.scala_version}-{distribution.version}.jar")):
        raise BrokerToolingError(f"Maven finished but {distribution.libs} holds no Kafka jar; see {log_path}")
    (distribution.home / ".complete").write_text(distribution.version + "\n", encoding="utf-8")
    return True
