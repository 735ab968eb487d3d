"""The ``retrain`` command: one entry point, one subcommand per job.

The subcommands' parsers and handlers live in :mod:`retrain.commands`, one module per group of subcommands.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from retrain.commands import config, demo, evaluate, kafka, models, publish, schemas, services
from retrain.commands.outcomes import EXIT_ERROR, Command, describe_settings_error
from retrain.kafka import FatalFailure
from retrain.localkafka import BrokerError, BrokerToolingError
from retrain.registry import ArtifactVerificationError, RegistryError
from retrain.settings import load_settings
from retrain.topics import TopicLayoutError

__all__ = ["build_parser", "describe_settings_error", "main"]

log = logging.getLogger("retrain")

# Each adds its subcommand(s), in the order `retrain --help` lists them.
COMMAND_GROUPS = (
    kafka.add_kafka_commands,
    kafka.add_topics_commands,
    schemas.add_schemas_commands,
    config.add_config_command,
    services.add_detector_command,
    services.add_trainer_command,
    models.add_models_commands,
    services.add_scorer_command,
    publish.add_replay_command,
    publish.add_trigger_command,
    evaluate.add_evaluate_command,
    demo.add_demo_command,
    demo.add_roundtrip_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrain",
        description="Event-triggered retraining on Kafka. Configuration comes from RETRAIN_* variables.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(commands)
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
