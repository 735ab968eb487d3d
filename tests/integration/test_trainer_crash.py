"""kill -9 the trainer during a fit: after a restart the retrain completes once, with one version.

The retrain event is not committed until it is answered, so the restarted trainer reads it again; the registry
is asked first whether that event already has a version (a crash between register and publish), so a
redelivered event never makes a second one. The killed trainer's fit worker stops with it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from retrain.consumers.decoding import decode_record
from retrain.registry import ModelRegistry
from retrain.schemas import ModelUpdatedEvent, RetrainEvent, RetrainReason, TrainingWindow, encode
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import make_producer, read_all
from tests.helpers.processes import TRAINER_KEY as KEY
from tests.helpers.processes import Trainer
from tests.helpers.streams import labeled

pytestmark = pytest.mark.kafka

EXAMPLES = 10_000


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
    tracebacks = [
        output[max(0, output.index("Traceback") - 2_000) :][:6_000] for output in outputs if "Traceback" in output
    ]
    assert not tracebacks, "\n---\n".join(tracebacks)  # where it was raised, not a truncated list of outputs
    assert not any(KEY in output for output in outputs)  # the registry's key never reaches the logs
