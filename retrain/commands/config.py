"""``retrain config``: the effective configuration as JSON, secrets masked."""

from __future__ import annotations

import argparse
import json

from retrain.commands.arguments import Subcommands
from retrain.commands.outcomes import EXIT_OK
from retrain.settings import Settings


def add_config_command(commands: Subcommands) -> None:
    config = commands.add_parser("config", help="print the effective configuration (secrets masked)")
    config.set_defaults(handler=cmd_config)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    # model_dump keeps SecretStr masked: this output is safe to paste into an issue.
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return EXIT_OK
