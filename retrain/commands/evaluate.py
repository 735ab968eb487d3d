"""``retrain evaluate``: retraining strategies compared offline (no Kafka) on one stream, with the services' code."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.commands.arguments import Subcommands, positive_int
from retrain.commands.outcomes import EXIT_OK
from retrain.producers.streams import add_stream_options
from retrain.settings import Settings

if TYPE_CHECKING:
    from retrain.producers.replay import LabelDelay
    from retrain.producers.streams import StreamSource
    from retrain.simulation import StrategyResult


def add_evaluate_command(commands: Subcommands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="offline (no Kafka): compare retraining strategies on one stream with the services' code"
    )
    add_stream_options(evaluate)
    evaluate.add_argument("--scheduled-every", type=positive_int, default=5_000, help="the scheduled strategy")
    evaluate.add_argument(
        "--initial", type=positive_int, default=5_000, help="every strategy's first model: the first N examples"
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


def run_strategies(
    args: argparse.Namespace,
    source: StreamSource,
    delay: LabelDelay,
    settings: Settings,
    progress: Callable[[StrategyResult], None] | None = None,
) -> dict[str, StrategyResult]:
    """The strategies ``args`` chose (every one by default), run on ``source`` with ``args``' options; ValueError
    for an unknown strategy."""
    from retrain import evaluate
    from retrain.producers.streams import REGRESSION_GENERATORS

    return evaluate.evaluate_stream(
        source,
        settings.detector,
        settings.trainer,
        scheduled_every=args.scheduled_every,
        initial=args.initial,
        names=[n.strip() for n in args.strategies.split(",")] if args.strategies else None,
        progress=progress,
        label_delay=None if delay.kind == "fixed" and delay.a == 0 else delay,
        delay_unit=args.label_delay_unit,
        task=args.task
        or ("regression" if args.csv is None and args.generator in REGRESSION_GENERATORS else "classification"),
    )


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from retrain import evaluate
    from retrain.plots import Timeline, plot_timelines
    from retrain.producers.replay import parse_label_delay
    from retrain.producers.streams import stream_from_args

    try:
        source = stream_from_args(args)
        delay = parse_label_delay(args.label_delay)
    except ValueError as error:
        print(f"retrain evaluate: {error}", file=sys.stderr)
        return 2
    print(f"evaluating on {source.description}", file=sys.stderr)
    started = time.monotonic()
    try:
        results = run_strategies(
            args,
            source,
            delay,
            settings,
            progress=lambda r: print(f"  {r.name}: {r.metric} {r.score:.4f}, {r.retrains} retrains", file=sys.stderr),
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
