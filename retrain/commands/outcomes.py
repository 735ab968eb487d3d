"""What a command handler is and what it returns: exit codes, and errors described without their input values."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import ValidationError

from retrain.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3
Command = Callable[[argparse.Namespace, Settings], int]


def describe_settings_error(error: ValidationError) -> str:
    """The settings' validation errors without their input values, which may hold a password."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or error.title
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)
