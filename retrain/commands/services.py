"""``retrain detector``, ``retrain trainer`` and ``retrain scorer``: the pipeline's long-running services.

Each prints one line saying what it reads and where its metrics are, then runs its consume loop until SIGTERM or
Ctrl-C.
"""

from __future__ import annotations

import argparse

from retrain.commands.arguments import Subcommands
from retrain.commands.outcomes import EXIT_OK
from retrain.settings import Settings


def add_detector_command(commands: Subcommands) -> None:
    detector = commands.add_parser("detector", help="run the detector service (join, drift, retrain events)")
    detector.set_defaults(handler=cmd_detector)


def add_trainer_command(commands: Subcommands) -> None:
    trainer = commands.add_parser("trainer", help="run the trainer service (buffers, retraining, registry)")
    trainer.set_defaults(handler=cmd_trainer)


def add_scorer_command(commands: Subcommands) -> None:
    scorer = commands.add_parser("scorer", help="run the scorer service (predictions, hot-swapped models)")
    scorer.set_defaults(handler=cmd_scorer)


def cmd_detector(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.consumers.wiring import run_detector

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
    from retrain.consumers.wiring import run_trainer

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


def cmd_scorer(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.consumers.wiring import run_scorer

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
