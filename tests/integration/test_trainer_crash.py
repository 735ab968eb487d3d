"""kill -9 the trainer during a fit: after a restart the retrain completes once, with one version.

The retrain event is not committed until it is answered, so the restarted trainer reads it again; the registry
is asked first whether that event already has a version (a crash between register and publish), so a
redelivered event never makes a second one. The killed trainer's fit worker stops with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumers.decoding import decode_record
from retrain.registry import ModelRegistry
from retrain.settings import KafkaSettings, TopicSettings
from schemas import ModelUpdatedEvent, RetrainEvent, RetrainReason, TrainingWindow, encode
from tests.conftest import REPO_ROOT
from tests.integration.kafka_io import make_producer
from tests.integration.test_detector import read_all
from tests.integration.test_detector_process import free_port, scrape
from tests.integration.test_trainer import labeled

pytestmark = pytest.mark.kafka

KEY = "trainer-crash-test-key-0123456789abcdef"
EXAMPLES = 10_000


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return None


class Trainer:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, group: str, registry: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "RETRAIN_KAFKA_CLIENT": kafka.client,
            "RETRAIN_KAFKA_PROCESSING_GUARANTEE": kafka.processing_guarantee,
            "RETRAIN_TRAINER_GROUP_ID": group,
            "RETRAIN_METRICS_TRAINER_PORT": str(self.port),
            **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in topics.names().items()},
            "RETRAIN_TOPIC_STREAM_PARTITIONS": str(topics.stream_partitions),
            "RETRAIN_REGISTRY_PATH": str(registry),
            "RETRAIN_REGISTRY_HMAC_KEY": KEY,
            # A fit of about 10 s on this machine: long enough to be killed in the middle of it.
            "RETRAIN_TRAINER_ESTIMATOR": "sklearn.ensemble.RandomForestClassifier",
            "RETRAIN_TRAINER_ESTIMATOR_PARAMS": '{"n_estimators": 2000, "random_state": 0}',
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retrain.cli", "trainer"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def metric(self, name: str) -> float | None:
        try:
            return sample(scrape(self.port), name)
        except OSError:
            return None

    def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.read().decode(errors="replace")


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (its fit workers), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_during_a_fit_then_the_retrain_completes_once(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path, guarantee: str
):
    topics = created_topics
    kafka_settings = kafka_settings.model_copy(update={"processing_guarantee": guarantee})
    event = RetrainEvent(
        model_id="tc",
        reason=RetrainReason.MANUAL,
        detector="manual",
        model_version=0,
        suggested_window=TrainingWindow(last_n=EXAMPLES),
    )
    producer = make_producer(kafka_settings, linger_ms=20)
    for example in labeled("tc", EXAMPLES, variant_after=None, seed=21):
        producer.send(topics.labeled_examples, key=b"tc", value=encode(example))
    producer.flush()
    producer.send(topics.retrain_events, key=b"tc", value=encode(event))
    producer.flush()
    producer.close()

    registry = ModelRegistry(tmp_path / "models", KEY)
    trainer = Trainer(kafka_settings, topics, f"trainer-{unique}", tmp_path / "models")
    outputs = []
    try:
        trainer.start()
        # The fit has begun once the trainer reports the window it is fitting on.
        deadline = time.monotonic() + 120
        while trainer.metric('retrain_training_window_examples{model_id="tc"}') != EXAMPLES:
            assert time.monotonic() < deadline, "the trainer did not start fitting"
            assert trainer.process.poll() is None, trainer.output()
            time.sleep(0.1)
        time.sleep(1.0)
        assert registry.versions("tc") == []  # still fitting: nothing registered yet
        workers = children(trainer.process.pid)  # the fit worker, and multiprocessing's resource tracker
        fitting = [pid for pid in workers if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(fitting) == 1, workers  # RETRAIN_TRAINER_FIT_WORKERS: 1
        trainer.process.send_signal(signal.SIGKILL)
        assert trainer.process.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers):  # an orphaned worker notices within a second
            assert time.monotonic() < deadline, "the killed trainer's fit worker goes on fitting"
            time.sleep(0.1)
        outputs.append(trainer.output())
        assert registry.versions("tc") == [] and read_all(kafka_settings, topics.model_updates, 1) == []

        trainer.start()
        deadline = time.monotonic() + 180
        while not read_all(kafka_settings, topics.model_updates, 1):
            assert time.monotonic() < deadline, "the restarted trainer did not answer the event"
            assert trainer.process.poll() is None, trainer.output()
            time.sleep(1)
        trainer.process.send_signal(signal.SIGTERM)
        assert trainer.process.wait(timeout=10) == 0
        outputs.append(trainer.output())
    finally:
        if trainer.process is not None and trainer.process.poll() is None:
            trainer.process.kill()

    updates = [decode_record(r, ModelUpdatedEvent) for r in read_all(kafka_settings, topics.model_updates, 1)]
    assert [(u.trigger_event_id, u.version, u.promoted) for u in updates] == [(event.event_id, 1, True)]
    versions = registry.versions("tc")
    assert [(v.version, v.trigger_event_id, v.n_samples) for v in versions] == [(1, event.event_id, EXAMPLES)]
    assert registry.champion("tc").version == 1
    assert not any("Traceback" in output for output in outputs), outputs
    assert not any(KEY in output for output in outputs)  # the registry's key never reaches the logs
