"""The ``retrain`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from retrain.kafka import FatalFailure
from retrain.localkafka import BrokerError, BrokerToolingError, LocalBroker
from retrain.registry import ArtifactVerificationError, RegistryError
from retrain.settings import BrokerSettings, Settings, load_settings
from retrain.topics import TopicLayoutError

log = logging.getLogger("retrain")
EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3
Command = Callable[[argparse.Namespace, Settings], int]


def _broker_settings(args: argparse.Namespace, settings: Settings) -> BrokerSettings:
    update = {}
    if getattr(args, "port", None) is not None:
        update["port"] = args.port
    if getattr(args, "data_dir", None) is not None:
        update["data_dir"] = args.data_dir
    return settings.broker.model_copy(update=update)


def cmd_kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    broker = LocalBroker(_broker_settings(args, settings))
    started_at = time.monotonic()
    already = broker.running_pid()
    pid = broker.start(fresh=args.fresh)
    if already is not None:
        print(f"Kafka is already running at {broker.bootstrap} (pid {pid})")
    else:
        print(
            f"Kafka {broker.settings.kafka_version} is running at {broker.bootstrap} (pid {pid}), "
            f"ready in {time.monotonic() - started_at:.1f}s; data in {broker.data_dir}, log in {broker.log_file}"
        )
    if not args.foreground:
        return EXIT_OK
    print("Running in the foreground; Ctrl-C stops the broker.")
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping and broker.running_pid() is not None:
        time.sleep(0.5)
    broker.stop()
    print("Kafka stopped")
    return EXIT_OK


def cmd_kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    broker = LocalBroker(_broker_settings(args, settings))
    print(f"Kafka at {broker.bootstrap} stopped" if broker.stop() else f"Kafka at {broker.bootstrap} was not running")
    return EXIT_OK


def cmd_kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    status = LocalBroker(_broker_settings(args, settings)).status()
    if not status.running:
        print(f"Kafka at {status.bootstrap} is not running")
        return EXIT_NOT_RUNNING
    answer = "answers metadata requests" if status.reachable else "does NOT answer metadata requests"
    print(f"Kafka at {status.bootstrap} is running (pid {status.pid}) and {answer}; log in {status.log_file}")
    return EXIT_OK if status.reachable else EXIT_ERROR


def cmd_kafka_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.localkafka.jars import check_java, ensure_distribution

    broker = LocalBroker(settings.broker)
    check_java()
    started_at = time.monotonic()
    downloaded = ensure_distribution(broker.distribution)
    what = "downloaded" if downloaded else "already cached"
    print(
        f"Kafka {broker.distribution.version} jars {what} in {broker.distribution.libs} "
        f"({time.monotonic() - started_at:.1f}s)"
    )
    return EXIT_OK


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.kafka import make_admin
    from retrain.topics import ensure_topics, pipeline_topics

    specs = pipeline_topics(settings.topics)
    admin = make_admin(settings.kafka)
    try:
        report = ensure_topics(admin, specs)
    finally:
        admin.close()
    for spec in specs:
        state = "created" if spec.name in report.created else "exists"
        print(f"{spec.name:<24} {spec.partitions:>3} partition(s)  {state}")
    if not report.ok:
        raise TopicLayoutError("; ".join(report.problems))
    return EXIT_OK


def cmd_schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.export import SCHEMA_DIR, export_schemas, stale_schema_files

    directory = args.directory or SCHEMA_DIR
    if args.check:
        stale = stale_schema_files(directory)
        if stale:
            print(f"stale JSON Schema files in {directory}: {', '.join(stale)}; run `retrain schemas export`")
            return EXIT_ERROR
        print(f"JSON Schema files in {directory} are current")
        return EXIT_OK
    for path in export_schemas(directory):
        print(path)
    return EXIT_OK


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    # model_dump keeps SecretStr masked: this output is safe to paste into an issue.
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from producers.streams import stream_from_args
    from retrain.demo import run_demo

    try:
        source = stream_from_args(args)
    except ValueError as error:
        print(f"retrain demo: {error}", file=sys.stderr)
        return 2
    return run_demo(
        settings,
        lambda line: print(line, flush=True),
        source=source,
        rate=args.rate,
        label_delay=args.label_delay,
        keep_broker=args.keep_broker,
        png=args.png,
    )


def cmd_roundtrip(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.roundtrip import run_roundtrip

    return run_roundtrip(settings, keep_broker=args.keep_broker)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from producers.replay import parse_label_delay
    from producers.streams import REGRESSION_GENERATORS, stream_from_args
    from retrain import evaluate
    from retrain.plots import Timeline, plot_timelines

    try:
        source = stream_from_args(args)
        delay = parse_label_delay(args.label_delay)
    except ValueError as error:
        print(f"retrain evaluate: {error}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.strategies.split(",")] if args.strategies else None
    print(f"evaluating on {source.description}", file=sys.stderr)
    started = time.monotonic()
    try:
        results = evaluate.evaluate_stream(
            source,
            settings.detector,
            settings.trainer,
            scheduled_every=args.scheduled_every,
            initial=args.initial,
            names=names,
            progress=lambda r: print(f"  {r.name}: {r.metric} {r.score:.4f}, {r.retrains} retrains", file=sys.stderr),
            label_delay=None if delay.kind == "fixed" and delay.a == 0 else delay,
            delay_unit=args.label_delay_unit,
            task=args.task
            or ("regression" if args.csv is None and args.generator in REGRESSION_GENERATORS else "classification"),
        )
    except ValueError as error:
        print(f"retrain evaluate: {error}", file=sys.stderr)
        return 2
    print(evaluate.table(results))
    captured = evaluate.gain(results)
    if captured is not None:
        print(f"gain = (default - static) / (oracle - static) = {captured:.3f}")
    print(f"({time.monotonic() - started:.0f}s)", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(evaluate.report(results), indent=2) + "\n")
    if args.png is not None and next(iter(results.values())).task == "regression":
        print("--png draws rolling accuracy: not for a regression stream", file=sys.stderr)
    elif args.png is not None:
        shown = [r for name, r in results.items() if name in ("static", "scheduled", "default", "oracle")] or list(
            results.values()
        )
        timelines = [
            Timeline(
                r.name, r.correct, r.detections, [s for s in r.swaps if s < len(r.correct)], r.retrains, r.accuracy
            )
            for r in shown
        ]
        plot_timelines(timelines, args.png, drift_points=source.drift_points, title=source.description)
        print(f"wrote {args.png}", file=sys.stderr)
    return EXIT_OK


def describe_settings_error(error: ValidationError) -> str:
    """The settings' validation errors without their input values, which may hold a password."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or error.title
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def cmd_detector(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.detector import run_detector

    loop = run_detector(settings)
    loop.install_signal_handlers()
    if loop.service.states is not None:
        watches = "with" if loop.service.state_key is not None else "without (no RETRAIN_REGISTRY_HMAC_KEY)"
        snapshots = (
            f"state stores in {loop.service.states.root}, changelog {settings.topics.detector_changelog}, "
            f"{watches} the detectors' state"
        )
    elif loop.service.changelog is not None:
        snapshots = f"join in memory; state snapshots in {settings.topics.detector_state}"
    else:
        snapshots = "join in memory; state snapshots off"
    print(
        f"detector: reading {settings.topics.predictions} and {settings.topics.labels} at "
        f"{settings.kafka.bootstrap_servers}; {snapshots}; metrics on http://{settings.metrics.host}:"
        f"{settings.metrics.detector_port}/metrics",
        flush=True,
    )
    loop.run()
    return EXIT_OK


def cmd_trainer(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.trainer import run_trainer

    loop = run_trainer(settings)
    loop.install_signal_handlers()
    print(
        f"trainer: reading {settings.topics.labeled_examples} and {settings.topics.retrain_events} at "
        f"{settings.kafka.bootstrap_servers}; registry in {settings.registry.location}; metrics on "
        f"http://{settings.metrics.host}:{settings.metrics.trainer_port}/metrics",
        flush=True,
    )
    loop.run()
    return EXIT_OK


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.registry import open_registry

    registry = open_registry(settings.registry)
    if args.models_command == "list":
        for model_id in registry.models():
            champion = registry.champion(model_id)
            versions = registry.versions(model_id)
            in_service = champion.version if champion else "-"
            print(f"{model_id:<32} versions {len(versions):>4}  in service {in_service}")
        return EXIT_OK
    if args.models_command == "show":
        infos = [registry.info(args.model, args.version)] if args.version else registry.versions(args.model)
        champion = registry.champion(args.model)
        for info in infos:
            mark = "*" if champion is not None and champion.version == info.version else " "
            metrics = ", ".join(f"{name}={value:.4f}" for name, value in sorted(info.metrics.items()))
            print(
                f"{mark} v{info.version:<4} {info.created_at.isoformat()} n={info.n_samples} {metrics} "
                f"sha256={info.sha256[:12]} trigger={info.trigger_event_id}"
            )
        return EXIT_OK
    from producers import EventPublisher
    from retrain.kafka import make_producer
    from schemas import ModelUpdatedEvent, UpdateOutcome

    previous = registry.champion(args.model)
    if args.models_command == "promote":
        info = registry.promote(args.model, args.version)
        outcome = UpdateOutcome.PROMOTED
    else:
        info = registry.rollback(args.model)
        outcome = UpdateOutcome.ROLLED_BACK
    update = ModelUpdatedEvent(
        model_id=info.model_id,
        version=info.version,
        previous_version=previous.version if previous else None,
        promoted=True,
        outcome=outcome,
        metrics=info.metrics,
        n_samples=info.n_samples,
        artifact_uri=info.artifact_uri,
        sha256=info.sha256,
        detail=f"{args.models_command} from the command line",
    )
    producer = make_producer(settings.kafka)
    try:
        EventPublisher(producer, settings.topics).publish_and_wait(update)
    finally:
        producer.close()
    print(f"{info.model_id}: version {info.version} in service ({outcome.value}); published {update.event_id}")
    return EXIT_OK


def cmd_scorer(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.scorer import run_scorer

    loop = run_scorer(settings)
    loop.install_signal_handlers()
    print(
        f"scorer: reading {settings.topics.scoring_requests} at {settings.kafka.bootstrap_servers}; models from "
        f"{settings.registry.location} (a model with no promoted version gets {settings.scorer.fallback_prediction}, "
        f"version 0); metrics on http://{settings.metrics.host}:{settings.metrics.scorer_port}/metrics",
        flush=True,
    )
    loop.run()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from producers import EventPublisher
    from producers.replay import ReplayConfig, Replayer
    from producers.streams import stream_from_args
    from retrain.kafka import make_producer

    try:
        source = stream_from_args(args)
        config = ReplayConfig(
            rate=args.rate,
            label_delay=args.label_delay,
            label_fraction=args.label_fraction,
            seed=args.seed,
            wait_for_labels=args.wait_for_labels,
        )
    except (ValueError, argparse.ArgumentTypeError) as error:
        print(f"retrain replay: {error}", file=sys.stderr)
        return EXIT_ERROR
    producer = make_producer(settings.kafka, linger_ms=20, batch_bytes=512 * 1024)
    try:
        try:
            replayer = Replayer(
                EventPublisher(producer, settings.topics),
                source,
                args.model_id,
                config,
                run_id=args.run_id,
                progress=lambda stats: print(f"replay: {stats.summary()}", flush=True),
                progress_every=args.progress_every,
            )
        except ValueError as error:
            print(f"retrain replay: {error}", file=sys.stderr)
            return EXIT_ERROR
        pace = f"{config.rate:g}/s" if config.rate else "as fast as possible"
        print(
            f"replay {replayer.run_id}: {source.description} for model {args.model_id} into "
            f"{settings.topics.scoring_requests} ({pace}); {config.label_fraction:.0%} of the labels into "
            f"{settings.topics.labels} after {config.label_delay} s",
            flush=True,
        )
        previous = {sig: signal.signal(sig, replayer.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stats = replayer.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        producer.close()
    print(f"replay {stats.run_id} {'stopped' if stats.stopped else 'done'}: {stats.summary()}", flush=True)
    return EXIT_OK if stats.send_errors == 0 else EXIT_ERROR


def cmd_trigger(args: argparse.Namespace, settings: Settings) -> int:
    from producers import EventPublisher
    from retrain.kafka import KafkaFailure, make_producer
    from schemas import RetrainEvent, RetrainReason, RetrainTrace, TrainingWindow
    from schemas.types import utc_now

    try:
        event = RetrainEvent(
            model_id=args.model,
            reason=RetrainReason(args.reason),
            detector=None,
            note=args.note,
            trace=RetrainTrace(detected=utc_now()),
            suggested_window=TrainingWindow(last_n=args.window) if args.window is not None else None,
        )
    except ValidationError as error:
        print(f"retrain trigger: invalid retrain event:\n{describe_settings_error(error)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        producer = make_producer(settings.kafka)
        try:
            sent = EventPublisher(producer, settings.topics).publish_and_wait(event)
        finally:
            producer.close()
    except KafkaFailure as error:
        print(f"retrain trigger: not published to {settings.kafka.bootstrap_servers}: {error!r}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"retrain trigger: {event.reason.value} retrain of {event.model_id} published to "
        f"{sent.topic}[{sent.partition}]@{sent.offset}",
        file=sys.stderr,
    )
    print(event.event_id)
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrain",
        description="Event-triggered retraining on Kafka. Configuration comes from RETRAIN_* variables.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = commands.add_parser("kafka", help="run the project's own local Apache Kafka broker (no Docker)")
    kafka_commands = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    start = kafka_commands.add_parser("start", help="start the broker and wait until it answers")
    start.add_argument("--fresh", action="store_true", help="wipe the broker's data directory first")
    start.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops the broker")
    stop = kafka_commands.add_parser("stop", help="stop the broker cleanly")
    status = kafka_commands.add_parser("status", help="is the broker running and answering? (exit 3: not running)")
    for sub in (start, stop, status):
        sub.add_argument("--port", type=int, help="broker port (default: RETRAIN_BROKER_PORT or 9092)")
        sub.add_argument("--data-dir", type=Path, help="data directory (default: .cache/kafka/data-<port>)")
    start.set_defaults(handler=cmd_kafka_start)
    stop.set_defaults(handler=cmd_kafka_stop)
    status.set_defaults(handler=cmd_kafka_status)
    fetch = kafka_commands.add_parser("fetch", help="download the broker's jars into the cache, nothing else")
    fetch.set_defaults(handler=cmd_kafka_fetch)

    topics = commands.add_parser("topics", help="manage the pipeline's topics")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_commands.add_parser("create", help="create every pipeline topic that is missing (idempotent)")
    create.set_defaults(handler=cmd_topics_create)

    schemas = commands.add_parser("schemas", help="the events' JSON Schema")
    schemas_commands = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    export = schemas_commands.add_parser("export", help="write one JSON Schema file per event")
    export.add_argument("--directory", type=Path, help="where to write (default: schemas/json in the package)")
    export.add_argument("--check", action="store_true", help="only check that the files are current")
    export.set_defaults(handler=cmd_schemas_export)

    config = commands.add_parser("config", help="print the effective configuration (secrets masked)")
    config.set_defaults(handler=cmd_config)

    detector = commands.add_parser("detector", help="run the detector service (join, drift, retrain events)")
    detector.set_defaults(handler=cmd_detector)

    trainer = commands.add_parser("trainer", help="run the trainer service (buffers, retraining, registry)")
    trainer.set_defaults(handler=cmd_trainer)

    models = commands.add_parser("models", help="the model registry")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    models_commands.add_parser("list", help="models and the version in service").set_defaults(handler=cmd_models)
    show = models_commands.add_parser("show", help="a model's versions and their metadata")
    show.add_argument("model")
    show.add_argument("version", type=int, nargs="?")
    show.set_defaults(handler=cmd_models)
    promote = models_commands.add_parser("promote", help="put a version in service and publish the update")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.set_defaults(handler=cmd_models)
    rollback = models_commands.add_parser("rollback", help="put the previous version back and publish the update")
    rollback.add_argument("model")
    rollback.set_defaults(handler=cmd_models)

    scorer = commands.add_parser("scorer", help="run the scorer service (predictions, hot-swapped models)")
    scorer.set_defaults(handler=cmd_scorer)

    from producers.streams import add_stream_options

    replay = commands.add_parser(
        "replay", help="replay a stream into scoring-requests, and its labels into labels later"
    )
    add_stream_options(replay)
    options = replay.add_argument_group("replay")
    options.add_argument("--model-id", required=True, help="the model the requests are for")
    options.add_argument("--rate", type=float, default=None, help="examples per second (default: as fast as possible)")
    options.add_argument(
        "--label-delay", default="0", help="seconds until a label: 0, fixed:S, uniform:LOW,HIGH or exp:MEAN"
    )
    options.add_argument(
        "--label-fraction", type=float, default=1.0, help="share of the predictions that get a label, in (0, 1]"
    )
    options.add_argument("--run-id", default=None, help="prefix of the prediction ids (default: random)")
    options.add_argument(
        "--wait-for-labels", action="store_true", help="at the end, send each remaining label when it is due"
    )
    options.add_argument("--progress-every", type=_positive_int, default=10_000, help="print progress every N")
    replay.set_defaults(handler=cmd_replay)

    trigger = commands.add_parser("trigger", help="ask for a retrain of a model (publish a RetrainEvent)")
    trigger.add_argument("--model", required=True, help="the model to retrain")
    trigger.add_argument("--reason", required=True, choices=["business", "feedback", "manual"])
    trigger.add_argument("--note", required=True, help="why, for whoever reads the event")
    trigger.add_argument("--window", type=_positive_int, default=None, help="train on the latest N examples")
    trigger.set_defaults(handler=cmd_trigger)

    evaluate = commands.add_parser(
        "evaluate", help="offline (no Kafka): compare retraining strategies on one stream with the services' code"
    )
    from producers.streams import add_stream_options

    add_stream_options(evaluate)
    evaluate.add_argument("--scheduled-every", type=_positive_int, default=5_000, help="the scheduled strategy")
    evaluate.add_argument(
        "--initial", type=_positive_int, default=5_000, help="every strategy's first model: the first N examples"
    )
    evaluate.add_argument(
        "--label-delay",
        default="0",
        help="when each label arrives: 0 (at once), fixed:D, uniform:LOW,HIGH or exp:MEAN, in --label-delay-unit",
    )
    evaluate.add_argument(
        "--label-delay-unit",
        choices=["examples", "seconds"],
        default="examples",
        help="examples served before the label is seen, or seconds of the stream's event time",
    )
    evaluate.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="default: regression for the friedman generator, classification otherwise (scored by accuracy or MAE)",
    )
    evaluate.add_argument("--strategies", default=None, help="comma-separated subset (default: all)")
    evaluate.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    evaluate.add_argument("--png", type=Path, default=None, help="write rolling accuracy with drifts and swaps")
    evaluate.set_defaults(handler=cmd_evaluate)

    demo = commands.add_parser(
        "demo", help="the whole loop live: broker, scorer, detector, trainer, a drifting stream, a PNG at the end"
    )
    add_stream_options(demo)
    demo.set_defaults(generator="agrawal", concepts="0,2,4", drift_points="8000,16000", examples=24_000, noise=0.0)
    demo.add_argument("--rate", type=float, default=300.0, help="examples per second (default 300)")
    demo.add_argument("--label-delay", default="uniform:0.1,0.5", help="label delay distribution (seconds)")
    demo.add_argument("--png", type=Path, default=None, help="where to write the PNG (default .cache/demo/RUN/)")
    demo.add_argument("--keep-broker", action="store_true", help="leave a broker the demo started running")
    demo.set_defaults(handler=cmd_demo)

    roundtrip = commands.add_parser("roundtrip", help="start a broker if needed, round-trip one event of each kind")
    roundtrip.add_argument("--keep-broker", action="store_true", help="leave a broker it started running")
    roundtrip.set_defaults(handler=cmd_roundtrip)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a service that does not stop is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    level = os.environ.get("RETRAIN_LOG_LEVEL", "WARNING").upper()  # e.g. INFO: retrain events, swaps, restores
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(logging, level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose and level == "INFO":
        logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's INFO is per connection and request
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"retrain: invalid configuration:\n{describe_settings_error(error)}", file=sys.stderr)
        return 2
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except (BrokerError, BrokerToolingError, TopicLayoutError, RegistryError, ArtifactVerificationError) as error:
        print(f"retrain: {error}", file=sys.stderr)
        return EXIT_ERROR
    except FatalFailure as error:  # a service stopped without committing past what it wrote (say why, last)
        log.error("%s stopped", args.command, exc_info=True)
        print(f"retrain: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
