"""``retrain kafka``: the project's own local broker; ``retrain topics``: the pipeline's topics on any cluster."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from retrain.commands.arguments import Subcommands
from retrain.commands.outcomes import EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_OK
from retrain.localkafka import LocalBroker
from retrain.settings import BrokerSettings, Settings
from retrain.topics import TopicLayoutError


def add_kafka_commands(commands: Subcommands) -> None:
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


def add_topics_commands(commands: Subcommands) -> None:
    topics = commands.add_parser("topics", help="manage the pipeline's topics")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_commands.add_parser("create", help="create every pipeline topic that is missing (idempotent)")
    create.set_defaults(handler=cmd_topics_create)


def _broker_settings(args: argparse.Namespace, settings: Settings) -> BrokerSettings:
    """The broker's settings with the command line's --port and --data-dir, when given."""
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
