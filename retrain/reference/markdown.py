"""Markdown building blocks of the generated pages: wrapped paragraphs, bullets, tables and code spans."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Sequence

WIDTH = 118


def header(source: str) -> str:
    """The comment that opens a generated page, naming what it is generated from."""
    return f"<!-- Generated from {source} by `make docs` (python -m retrain.reference): do not edit. -->\n"


def wrap(text: str) -> str:
    """Docstring or prose -> Markdown paragraphs wrapped at WIDTH, with reStructuredText ``code`` made `code`."""
    text = inspect.cleandoc(text).replace("``", "`")
    text = re.sub(r":(?:class|meth|func|mod):`~?([^`]+)`", r"`\1`", text)
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n")]
    return "\n\n".join(textwrap.fill(p, WIDTH, break_on_hyphens=False, break_long_words=False) for p in paragraphs)


def cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and a `<` outside code spans kept from opening an HTML tag."""
    pieces = " ".join(text.split()).replace("|", "\\|").split("`")
    for index in range(0, len(pieces), 2):
        pieces[index] = re.sub(r"<(?=[A-Za-z/!])", "&lt;", pieces[index])
    return "`".join(pieces)


def bullet(text: str) -> str:
    """One list item, wrapped at WIDTH."""
    return textwrap.fill(
        " ".join(text.split()), WIDTH, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
    )


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; every cell goes through :func:`cell`."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(text) for text in row) + " |" for row in rows]
    return "\n".join(lines)


def code(value: str) -> str:
    """A code span."""
    return f"`{value}`"
