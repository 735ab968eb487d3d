"""Reference pages generated from the code, so that they cannot drift from it.

- ``docs/configuration.md``: every ``RETRAIN_*`` variable of the settings classes in :mod:`retrain.settings`, with
  its type, constraints, default and description (the fields' ``description``); see :mod:`.configuration`.
- ``docs/events.md``: every event of :mod:`retrain.schemas.events`, field by field, from the same JSON Schema that
  ``retrain schemas export`` writes, and the topics they travel on; see :mod:`.events`.

``python -m retrain.reference`` (``make docs``) writes both; ``python -m retrain.reference --check`` exits 1 and
names the stale pages. ``tests/unit/test_reference_docs.py`` fails when a page on disk differs from its rendering.
The output depends on the code only: never on the environment, the clock or the order of a dict built at run time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from retrain.reference.configuration import env_names as _env_names
from retrain.reference.configuration import render_configuration
from retrain.reference.events import render_events

__all__ = ["DOCS_DIR", "PAGES", "_env_names", "main", "render_pages", "stale_pages", "write_pages"]

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = "`make docs` (or `.venv/bin/python -m retrain.reference`)"

PAGES: dict[str, Callable[[], str]] = {"configuration.md": render_configuration, "events.md": render_events}


def render_pages() -> dict[str, str]:
    """File name -> its text, as it must be on disk."""
    return {name: render() for name, render in PAGES.items()}


def stale_pages(directory: Path = DOCS_DIR) -> list[str]:
    """Names of the generated pages that are missing from ``directory`` or differ from their rendering."""
    return [
        name
        for name, text in render_pages().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]


def write_pages(directory: Path = DOCS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_pages().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrain.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, default=DOCS_DIR, help="where the pages go (default: docs/)")
    parser.add_argument("--check", action="store_true", help="only check that the pages are current (exit 1: stale)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(args.directory)
        if stale:
            print(f"stale generated pages in {args.directory}: {', '.join(stale)}; run {REGENERATE}")
            return 1
        print(f"generated pages in {args.directory} are current")
        return 0
    for path in write_pages(args.directory):
        print(path)
    return 0
