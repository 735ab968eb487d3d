"""``retrain demo`` and ``retrain roundtrip``: the pipeline run whole on this machine, a broker started if needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retrain.commands.arguments import Subcommands
from retrain.producers.streams import add_stream_options
from retrain.settings import Settings


def add_demo_command(commands: Subcommands) -> None:
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


def add_roundtrip_command(commands: Subcommands) -> None:
    roundtrip = commands.add_parser("roundtrip", help="start a broker if needed, round-trip one event of each kind")
    roundtrip.add_argument("--keep-broker", action="store_true", help="leave a broker it started running")
    roundtrip.set_defaults(handler=cmd_roundtrip)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.demo import run_demo
    from retrain.producers.streams import stream_from_args

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
