"""``retrain demo``: the whole loop on a drifting stream, live, on this machine.

A broker (started if none answers), fresh topics for this run, the scorer, detector and trainer in this process,
and a replayer sending a River stream with abrupt drifts. Progress every second; at the end a summary, the same
stream through ``retrain evaluate``'s default strategy for comparison, and a PNG of rolling accuracy with the true
drifts, the detections and the model swaps. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from retrain.consumers.decoding import decode_record
from retrain.consumers.metrics import LOOP_STAGES
from retrain.kafka import make_admin, make_consumer, make_producer, read_to_end
from retrain.producers import EventPublisher
from retrain.producers.replay import LabelDelay, ReplayConfig, Replayer, ReplayStats, parse_label_delay
from retrain.producers.streams import GeneratorSource, StreamSource
from retrain.roundtrip import ensure_broker
from retrain.schemas import LabeledExample, RetrainEvent, RetrainReason
from retrain.settings import Settings
from retrain.topics import ensure_topics, pipeline_topics

if TYPE_CHECKING:
    from retrain.plots import Timeline

Say = Callable[[str], None]


def default_stream() -> GeneratorSource:
    """Agrawal, three concepts, two abrupt switches: the drift is plain to see and to detect."""
    return GeneratorSource("agrawal", (0, 2, 4), (8_000, 16_000), 24_000, seed=42)


@dataclass
class DemoResult:
    """What happened over Kafka, in the detector's order of labeled examples."""

    examples: int = 0
    correct: bytearray = field(default_factory=bytearray)
    versions: list[int] = field(default_factory=list)
    detections: list[int] = field(default_factory=list)  # detected_at of each episode (drift or performance)
    retrain_events: list[RetrainEvent] = field(default_factory=list)
    promotions: int = 0
    dead_letters: float = 0.0
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)  # retrain loop stage -> (seconds, count)
    stats: ReplayStats | None = None
    interrupted: bool = False

    @property
    def swaps(self) -> list[int]:
        """Where each newer version first appears (late labels of older versions may follow it)."""
        first: dict[int, int] = {}
        for position, version in enumerate(self.versions):
            first.setdefault(version, position)
        return sorted(position for version, position in first.items() if position > 0)

    def accuracy(self, start: int) -> float:
        scored = self.correct[start:]
        return sum(scored) / len(scored) if scored else float("nan")


class _Service:
    """One service's consume loop in a thread of the demo, with its metrics in a private registry."""

    def __init__(self, name: str, build: Callable[..., Any], settings: Settings) -> None:
        self.name = name
        self.registry = CollectorRegistry()
        self.loop = build(settings, registry=self.registry, serve=False)
        self.thread = threading.Thread(target=self.loop.run, name=name, daemon=True)
        self.thread.start()

    def value(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels``."""
        return sum(
            sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=30)


def demo_settings(settings: Settings, run_id: str, bootstrap: str | None, workdir: Path) -> Settings:
    """This run's own topics, consumer groups and registry (with a key made for it when none is configured)."""
    topics = settings.topics.model_copy(
        update={role: f"demo-{run_id}-{name}" for role, name in settings.topics.names().items()}
        | {"stream_partitions": 2}
    )
    update: dict[str, Any] = {"topics": topics}
    if bootstrap is not None:
        update["kafka"] = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    key = settings.registry.hmac_key or SecretStr(secrets.token_hex(32))
    update["registry"] = settings.registry.model_copy(update={"path": workdir / "models", "hmac_key": key})
    for section in ("detector", "trainer", "scorer"):
        current = getattr(settings, section)
        update[section] = current.model_copy(update={"group_id": f"demo-{run_id}-{section}"})
    update["detector"] = update["detector"].model_copy(update={"state_dir": workdir / "state"})
    return settings.model_copy(update=update)


def run_demo(
    settings: Settings,
    say: Say = print,
    *,
    source: StreamSource | None = None,
    rate: float | None = 300.0,
    label_delay: str = "uniform:0.1,0.5",
    keep_broker: bool = False,
    workdir: Path = Path(".cache/demo"),
    png: Path | None = None,
    model_id: str = "demo",
    compare: bool = True,
) -> int:
    source = source or default_stream()
    # kafka-python warns whenever a poll of its event loop takes over 100 ms, which fits (on this thread) cause.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    run_id = secrets.token_hex(4)
    started_at = time.monotonic()
    broker = ensure_broker(settings, say)
    run_dir = workdir / run_id
    settings = demo_settings(settings, run_id, broker.bootstrap if broker else None, run_dir)
    png = png or run_dir / "demo.png"
    result = _run_live(
        settings,
        say,
        source,
        rate=rate,
        label_delay=label_delay,
        model_id=model_id,
        run_id=run_id,
        started_at=started_at,
    )
    try:
        _collect(settings, model_id, result)
        offline_delay = _in_examples(label_delay, rate)
        _summarise(result, source, settings, say, png, compare, time.monotonic() - started_at, offline_delay)
    finally:
        if broker is not None and not keep_broker:
            broker.stop()
            say("broker: stopped (use --keep-broker to leave it running)")
    return 130 if result.interrupted else 0


class _Services(NamedTuple):
    scorer: _Service
    detector: _Service
    trainer: _Service


def _run_live(
    settings: Settings,
    say: Say,
    source: StreamSource,
    *,
    rate: float | None,
    label_delay: str,
    model_id: str,
    run_id: str,
    started_at: float,
) -> DemoResult:
    """Topics, the three services and the replay, until every label is joined and every retrain answered, or Ctrl-C."""
    stop = threading.Event()
    services: _Services | tuple[()] = ()
    replayer: Replayer | None = None

    def interrupt(*_: object) -> None:
        stop.set()
        if replayer is not None:
            replayer.stop()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    result = DemoResult()
    try:
        admin = make_admin(settings.kafka)
        try:
            ensure_topics(admin, pipeline_topics(settings.topics))
        finally:
            admin.close()
        say(f"demo {run_id}: topics demo-{run_id}-*, registry {settings.registry.location}")
        services = _start_services(settings)
        producer = make_producer(settings.kafka, linger_ms=20, batch_bytes=512 * 1024)
        replayer = Replayer(
            EventPublisher(producer, settings.topics),
            source,
            model_id,
            ReplayConfig(rate=rate, label_delay=label_delay, seed=7, wait_for_labels=True),
            run_id=run_id,
        )
        say(f"replaying {source.description} at {rate or 'max'}/s, labels after {label_delay} s")
        replay_thread = threading.Thread(target=lambda: setattr(result, "stats", replayer.run()), daemon=True)
        replay_thread.start()
        _watch(services, replay_thread, result, stop, say, model_id, source.examples, started_at)
        replay_thread.join(timeout=30)
        producer.close()
        result.interrupted = stop.is_set()
        _read_service_metrics(services, result)
    finally:
        for service in services:
            service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


def _start_services(settings: Settings) -> _Services:
    from retrain.consumers.wiring import run_detector, run_scorer, run_trainer

    scorer = _Service("scorer", run_scorer, settings)
    detector = _Service("detector", run_detector, settings)
    trainer = _Service("trainer", run_trainer, settings)
    return _Services(scorer, detector, trainer)


def _watch(
    services: _Services,
    replay_thread: threading.Thread,
    result: DemoResult,
    stop: threading.Event,
    say: Say,
    model_id: str,
    sent_total: int,
    started_at: float,
) -> None:
    """Progress every second until the replay is done, its labels joined and every retrain event answered."""
    scorer, detector, trainer = services
    last = (time.monotonic(), 0.0)
    while not stop.is_set():
        time.sleep(1.0)
        for service in services:
            if not service.alive:
                raise RuntimeError(f"the {service.name}'s loop died")
        joined = detector.value("retrain_labeled_examples_total", model_id=model_id)
        now = time.monotonic()
        speed = (joined - last[1]) / max(1e-6, now - last[0])
        last = (now, joined)
        accuracy = detector.value("retrain_rolling_accuracy", model_id=model_id)
        say(
            f"[{now - started_at:5.0f}s] labeled {joined:>7,.0f}/{sent_total:,} ({speed:6,.0f}/s)  "
            f"rolling accuracy {accuracy:.3f}  "
            f"drift events {detector.value('retrain_retrain_events_total', model_id=model_id, reason='drift'):.0f}"
            f"  retrains {trainer.value('retrain_model_updates_total', model_id=model_id):.0f}  "
            f"version in service {scorer.value('retrain_scorer_model_version', model_id=model_id):.0f}"
        )
        done = not replay_thread.is_alive() and joined >= (result.stats.labels_sent if result.stats else sent_total)
        asked = detector.value("retrain_retrain_events_total", model_id=model_id)
        answered = trainer.value("retrain_model_updates_total", model_id=model_id) + trainer.value(
            "retrain_retrain_events_coalesced_total", model_id=model_id
        )
        if done and answered >= asked:
            break


def _read_service_metrics(services: _Services, result: DemoResult) -> None:
    """The dead letters and the retrain loop's time per stage, summed over the services."""
    result.dead_letters = sum(s.value("retrain_dead_letters_total") for s in services)
    result.stages = {
        stage: (
            sum(s.value("retrain_loop_stage_seconds_sum", stage=stage) for s in services),
            sum(s.value("retrain_loop_stage_seconds_count", stage=stage) for s in services),
        )
        for stage in LOOP_STAGES
    }


def _in_examples(label_delay: str, rate: float | None) -> LabelDelay | None:
    """The replay's label delay (seconds) in examples at ``rate``, for the offline run of the same stream."""
    delay = parse_label_delay(label_delay)
    if rate is None:
        return None  # as fast as possible: no fixed number of examples per second
    return dataclasses.replace(delay, a=delay.a * rate, b=delay.b * rate)


def _collect(settings: Settings, model_id: str, result: DemoResult) -> None:
    """Read back what the services wrote: the labeled examples in order, and the retrain events."""
    consumer = make_consumer(settings.kafka, None)
    try:
        for topic in (settings.topics.labeled_examples, settings.topics.retrain_events):
            for record in read_to_end(consumer, [topic]):
                if topic == settings.topics.labeled_examples:
                    example = decode_record(record, LabeledExample)
                    if example.model_id == model_id:
                        result.correct.append(example.prediction == example.label)
                        result.versions.append(example.model_version)
                else:
                    result.retrain_events.append(decode_record(record, RetrainEvent))
    finally:
        consumer.close()
    result.examples = len(result.correct)
    seen: set[float] = set()
    for event in result.retrain_events:
        detected = event.evidence.values.get("detected_at")
        degradation = event.reason in (RetrainReason.DRIFT, RetrainReason.PERFORMANCE)
        if degradation and detected is not None and detected not in seen:
            seen.add(detected)
            result.detections.append(int(detected))
    result.promotions = len(result.swaps)


def _summarise(
    result: DemoResult,
    source: StreamSource,
    settings: Settings,
    say: Say,
    png: Path,
    compare: bool,
    elapsed: float,
    label_delay: LabelDelay | None = None,
) -> None:
    from retrain.plots import Timeline, plot_timelines

    start = settings.detector.cold_start_examples
    _report(result, source, start, say, elapsed)
    timelines = [
        Timeline(
            "demo over Kafka",
            result.correct,
            result.detections,
            result.swaps,
            max(0, result.promotions - 1),
            result.accuracy(start),
        )
    ]
    if compare and not result.interrupted:
        timelines.append(_offline_timeline(source, settings, say, label_delay))
    if result.examples:
        plot_timelines(timelines, png, drift_points=source.drift_points, title=f"demo: {source.description}")
        say(f"wrote {png}")


def _report(result: DemoResult, source: StreamSource, start: int, say: Say, elapsed: float) -> None:
    """What happened over Kafka: the joins, the accuracy after the cold start, drifts, detections and retrains."""
    say(f"--- summary after {elapsed:.0f}s{' (interrupted)' if result.interrupted else ''} ---")
    say(f"labeled examples joined: {result.examples:,}; dead letters: {result.dead_letters:.0f}")
    say(f"accuracy after the cold start ({start:,}): {result.accuracy(start):.4f}")
    say(
        f"true drifts at {list(source.drift_points)}; detected at {result.detections}; new versions from {result.swaps}"
    )
    reasons = [f"{e.reason.value}@{int(e.evidence.values.get('position', -1))}" for e in result.retrain_events]
    say(f"retrain events: {len(result.retrain_events)} ({', '.join(reasons)}); versions promoted: {result.promotions}")
    timed = [(stage, total / count) for stage, (total, count) in result.stages.items() if count]
    if timed:
        say("retrain loop, mean seconds per stage: " + ", ".join(f"{stage} {mean:.2f}" for stage, mean in timed))


def _offline_timeline(source: StreamSource, settings: Settings, say: Say, label_delay: LabelDelay | None) -> Timeline:
    """The same stream through ``retrain evaluate``'s default strategy, offline, for comparison."""
    from retrain import evaluate
    from retrain.plots import Timeline

    offline = evaluate.evaluate_stream(
        source,
        settings.detector,
        settings.trainer,
        scheduled_every=5_000,
        initial=None,
        names=["default"],
        label_delay=label_delay,
    )["default"]
    offline_swaps = [s for s in offline.swaps if s < len(offline.correct)]
    say(
        f"retrain evaluate (default, same stream and label delay, offline): accuracy {offline.accuracy:.4f}, "
        f"detected at {offline.detections}; new versions from {offline_swaps}"
    )
    return Timeline(
        "retrain evaluate (default)",
        offline.correct,
        offline.detections,
        offline_swaps,
        offline.retrains,
        offline.accuracy,
    )
