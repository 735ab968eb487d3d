"""``retrain replay`` and ``retrain trigger``: events put on the pipeline's topics from the command line."""

from __future__ import annotations

import argparse
import signal
import sys

from pydantic import ValidationError

from retrain.commands.arguments import Subcommands, positive_int
from retrain.commands.outcomes import EXIT_ERROR, EXIT_OK, describe_settings_error
from retrain.producers.streams import add_stream_options
from retrain.settings import Settings


def add_replay_command(commands: Subcommands) -> None:
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
    options.add_argument("--progress-every", type=positive_int, default=10_000, help="print progress every N")
    replay.set_defaults(handler=cmd_replay)


def add_trigger_command(commands: Subcommands) -> None:
    trigger = commands.add_parser("trigger", help="ask for a retrain of a model (publish a RetrainEvent)")
    trigger.add_argument("--model", required=True, help="the model to retrain")
    trigger.add_argument("--reason", required=True, choices=["business", "feedback", "manual"])
    trigger.add_argument("--note", required=True, help="why, for whoever reads the event")
    trigger.add_argument("--window", type=positive_int, default=None, help="train on the latest N examples")
    trigger.set_defaults(handler=cmd_trigger)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.kafka import make_producer
    from retrain.producers import EventPublisher
    from retrain.producers.replay import ReplayConfig, Replayer
    from retrain.producers.streams import stream_from_args

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
    from retrain.kafka import KafkaFailure, make_producer
    from retrain.producers import EventPublisher
    from retrain.schemas import RetrainEvent, RetrainReason, RetrainTrace, TrainingWindow
    from retrain.schemas.types import utc_now

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
