"""What the subcommands' parsers share: the type of the sub-parser collection and argument types."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# What `add_subparsers` returns: each command group adds its parsers to it.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def positive_int(text: str) -> int:
    """An argument that is a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value
