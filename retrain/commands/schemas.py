"""``retrain schemas export``: the events' JSON Schema files, written or checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrain.commands.arguments import Subcommands
from retrain.commands.outcomes import EXIT_ERROR, EXIT_OK
from retrain.settings import Settings


def add_schemas_commands(commands: Subcommands) -> None:
    schemas = commands.add_parser("schemas", help="the events' JSON Schema")
    schemas_commands = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    export = schemas_commands.add_parser("export", help="write one JSON Schema file per event")
    export.add_argument("--directory", type=Path, help="where to write (default: schemas/json in the package)")
    export.add_argument("--check", action="store_true", help="only check that the files are current")
    export.set_defaults(handler=cmd_schemas_export)


def cmd_schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from retrain.schemas.export import SCHEMA_DIR, export_schemas, stale_schema_files

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
