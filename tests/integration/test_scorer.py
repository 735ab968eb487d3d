"""The scorer against a real broker: every request scored once, cold start, hot swaps, refused versions, metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_scorer
from retrain.producers import EventPublisher
from retrain.producers.replay import ReplayConfig, Replayer
from retrain.producers.streams import GeneratorSource
from retrain.registry import ModelRegistry, ModelVersionInfo
from retrain.schemas import DeadLetter, ModelUpdatedEvent, PredictionEvent, ScoringRequest, UpdateOutcome, encode
from retrain.settings import KafkaSettings, RegistrySettings, ScorerSettings, Settings, TopicSettings
from tests.conftest import REPO_ROOT
from tests.helpers.kafka_io import make_admin, make_producer, read_all, seam_producer
from tests.helpers.processes import free_port, scrape
from tests.helpers.registry import KEY, promote
from tests.helpers.registry import sea_tree as sea_model
from tests.helpers.running import RunningService

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PREDICTION = PredictionEvent(
    prediction_id="p-1", model_id="fresh", model_version=1, features={"0": 1.0}, prediction=1, timestamp=NOW
)
UNUSABLE = ScoringRequest(
    prediction_id="huge", model_id="fresh", features={"0": 1e300, "1": 1.0, "2": 1.0}, timestamp=NOW
)


def announce(publisher: EventPublisher, info: ModelVersionInfo) -> None:
    update = ModelUpdatedEvent(
        model_id=info.model_id,
        version=info.version,
        promoted=True,
        outcome=UpdateOutcome.PROMOTED,
        artifact_uri=info.artifact_uri,
        sha256=info.sha256,
    )
    publisher.publish_and_wait(update)


def replay(publisher: EventPublisher, model_id: str, n: int, run_id: str, rate: float | None = None) -> None:
    source = GeneratorSource("sea", (0,), (), n, seed=7)
    stats = Replayer(publisher, source, model_id, ReplayConfig(rate=rate), run_id=run_id).run()
    assert stats.requests_sent == n and stats.send_errors == 0


def predictions(kafka_settings: KafkaSettings, topics: TopicSettings) -> list[PredictionEvent]:
    records = read_all(kafka_settings, topics.predictions, topics.stream_partitions)
    return [decode_record(r, PredictionEvent) for r in records]


@pytest.fixture
def settings(kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka=kafka_settings,
        topics=created_topics,
        registry=RegistrySettings(path=tmp_path / "models", hmac_key=KEY),
        scorer=ScorerSettings(group_id=f"scorer-{unique}"),
    )


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry.from_settings(settings.registry)


@pytest.fixture
def publisher(kafka_settings: KafkaSettings, settings: Settings) -> Iterator[EventPublisher]:
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    yield EventPublisher(seam_producer(producer), settings.topics)
    producer.close()


@pytest.fixture
def scorer(settings: Settings) -> Iterator[RunningService]:
    service = RunningService(run_scorer, settings)
    service.wait_assigned(timeout_s=60)
    yield service
    service.stop()


def test_every_request_is_scored_once_and_a_hot_swap_lands_between_batches(
    settings: Settings, registry: ModelRegistry, publisher: EventPublisher, kafka_settings: KafkaSettings
):
    promote(registry, "sea", sea_model(depth=4))
    scorer = RunningService(run_scorer, settings)
    try:
        scorer.wait_assigned(timeout_s=60)
        sending = threading.Thread(target=replay, args=(publisher, "sea", 6_000, "live", 3_000.0))
        sending.start()
        scorer.wait_for("retrain_predictions_total", 1_000, timeout_s=60, model_id="sea")
        announce(publisher, promote(registry, "sea", sea_model(depth=2)))  # while requests keep coming
        sending.join(timeout=60)
        scorer.wait_for("retrain_model_swaps_total", 1, timeout_s=30, model_id="sea")
        replay(publisher, "sea", 500, "tail")  # after the swap: all of these on version 2
        scorer.wait_for("retrain_predictions_total", 6_500, timeout_s=60, model_id="sea")
        assert scorer.value("retrain_scorer_model_version", model_id="sea") == 2
        assert scorer.value("retrain_model_load_failures_total", model_id="sea") == 0
    finally:
        scorer.stop()

    requests = read_all(kafka_settings, settings.topics.scoring_requests, settings.topics.stream_partitions)
    scored = predictions(kafka_settings, settings.topics)
    # One model, one partition: the predictions come in the order of the requests, each exactly once.
    assert [p.prediction_id for p in scored] == [decode_record(r, ScoringRequest).prediction_id for r in requests]
    assert len(scored) == 6_500 and len({p.prediction_id for p in scored}) == 6_500
    versions = [p.model_version for p in scored]
    first_v2 = versions.index(2)
    assert 1_000 <= first_v2 < 6_000 and versions == [1] * first_v2 + [2] * (6_500 - first_v2)
    tail = {p.prediction_id: p for p in scored if p.prediction_id.startswith("tail-")}
    assert len(tail) == 500 and {p.model_version for p in tail.values()} == {2}
    model = sea_model(depth=2)
    expected = model.predict([p.features for p in tail.values()])
    assert [p.prediction for p in tail.values()] == expected


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # the request made to fail
def test_cold_start_fallback_then_version_1_and_a_tampered_version_is_refused(
    settings: Settings,
    registry: ModelRegistry,
    publisher: EventPublisher,
    kafka_settings: KafkaSettings,
    scorer: RunningService,
):
    replay(publisher, "fresh", 200, "cold")
    scorer.wait_for("retrain_predictions_total", 200, timeout_s=60, model_id="fresh")
    announce(publisher, promote(registry, "fresh", sea_model(depth=4)))
    scorer.wait_for("retrain_model_swaps_total", 1, timeout_s=30, model_id="fresh")
    replay(publisher, "fresh", 200, "warm")
    scorer.wait_for("retrain_predictions_total", 400, timeout_s=60, model_id="fresh")

    tampered = promote(registry, "fresh", sea_model(depth=2))
    artifact = registry.path / "fresh" / str(tampered.version) / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"!")
    announce(publisher, tampered)
    scorer.wait_for("retrain_model_load_failures_total", 1, timeout_s=30, model_id="fresh")
    replay(publisher, "fresh", 200, "kept")
    topic, producer = settings.topics.scoring_requests, publisher.producer
    producer.send(topic, key=b"fresh", value=b"\xff not json")
    producer.send(topic, key=b"fresh", value=encode(PREDICTION))  # a prediction is not a request
    producer.send(topic, key=b"fresh", value=encode(UNUSABLE))  # float32 overflow in the tree
    producer.flush()
    for reason in ("invalid_utf8", "validation", "unusable_features"):
        scorer.wait_for("retrain_dead_letters_total", 1, timeout_s=60, service="scorer", reason=reason)
    scorer.wait_for("retrain_predictions_total", 600, timeout_s=60, model_id="fresh")
    assert scorer.value("retrain_scorer_model_version", model_id="fresh") == 1
    assert scorer.value("retrain_model_swaps_total", model_id="fresh") == 1

    runs: dict[str, list[PredictionEvent]] = {}
    for prediction in predictions(kafka_settings, settings.topics):
        runs.setdefault(prediction.prediction_id.split("-")[0], []).append(prediction)
    assert {run: len(scored) for run, scored in runs.items()} == {"cold": 200, "warm": 200, "kept": 200}
    assert {(p.model_version, p.prediction) for p in runs["cold"]} == {(0, 0)}  # the default fallback
    version_1 = sea_model(depth=4)
    for run in ("warm", "kept"):
        assert {p.model_version for p in runs[run]} == {1}
        assert [p.prediction for p in runs[run]] == version_1.predict([p.features for p in runs[run]])
    letters = [decode_record(r, DeadLetter) for r in read_all(kafka_settings, settings.topics.dead_letters, 1)]
    assert sorted(letter.error_reason for letter in letters) == ["invalid_utf8", "unusable_features", "validation"]
    unusable = next(letter for letter in letters if letter.error_reason == "unusable_features")
    assert unusable.payload() == encode(UNUSABLE) and unusable.source_topic == topic
    assert unusable.error_message.startswith(
        "fresh version 1 cannot score these features: ValueError: Input X contains infinity"
    )


def test_retrain_scorer_serves_its_metrics_and_stops_on_sigterm_with_offsets_committed(
    settings: Settings, registry: ModelRegistry, publisher: EventPublisher, kafka_settings: KafkaSettings, unique: str
):
    promote(registry, "proc", sea_model(depth=3))
    replay(publisher, "proc", 300, "proc")
    port, group = free_port(), f"scorer-proc-{unique}"
    env = {
        **os.environ,
        "RETRAIN_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RETRAIN_KAFKA_CLIENT": kafka_settings.client,
        "RETRAIN_SCORER_GROUP_ID": group,
        "RETRAIN_METRICS_SCORER_PORT": str(port),
        "RETRAIN_REGISTRY_PATH": str(registry.path),
        "RETRAIN_REGISTRY_HMAC_KEY": KEY,
        **{f"RETRAIN_TOPIC_{role.upper()}": name for role, name in settings.topics.names().items()},
        "RETRAIN_TOPIC_STREAM_PARTITIONS": str(settings.topics.stream_partitions),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "retrain.cli", "scorer"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, text = time.monotonic() + 90, ""
        while time.monotonic() < deadline and 'retrain_predictions_total{model_id="proc"} 300.0' not in text:
            time.sleep(0.5)
            try:
                text = scrape(port)
            except OSError:
                continue
        for sample in (
            'retrain_predictions_total{model_id="proc"} 300.0',
            'retrain_scorer_model_version{model_id="proc"} 1.0',
            'retrain_model_swaps_total{model_id="proc"} 0.0',
            'retrain_model_load_failures_total{model_id="proc"} 0.0',
            f'retrain_records_consumed_total{{service="scorer",topic="{settings.topics.scoring_requests}"}} 300.0',
            "retrain_scoring_batch_seconds_count ",
            'retrain_scoring_batch_seconds_bucket{le="+Inf"} ',
        ):
            assert sample in text, f"{sample!r} not in /metrics:\n{text}"
        outward = outward_address()
        if outward is not None:  # served on loopback only: another address of the machine does not answer
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{outward}:{port}/metrics", timeout=2)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert "scorer: reading" in output, output

    admin = make_admin(kafka_settings)
    try:
        committed = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    assert sum(meta.offset for tp, meta in committed.items() if tp.topic == settings.topics.scoring_requests) == 300
    assert len(predictions(kafka_settings, settings.topics)) == 300


def outward_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the route picks the interface
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address
