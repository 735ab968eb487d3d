"""JSON Schema for every event, written into the repository so producers in other languages can validate.

``retrain schemas export`` writes the files; ``stale_schema_files`` tells which files differ from the models
(a test fails on any, so the exported files never drift from the code).
"""

from __future__ import annotations

import json
from pathlib import Path

from retrain.schemas.events import EVENT_TYPES, Event

SCHEMA_DIR = Path(__file__).parent / "json"
SCHEMA_ID_PREFIX = "urn:kafka-retrain:schema:"


def schema_file_name(event_type: type[Event]) -> str:
    return f"{event_type.__name__}.schema.json"


def render_schema(event_type: type[Event]) -> str:
    """The JSON Schema (draft 2020-12) of one event, as the exact text stored in the repository."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_ID_PREFIX}{event_type.__name__}:v{event_type.SCHEMA_VERSION}",
        **event_type.model_json_schema(mode="validation"),
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write one ``<Event>.schema.json`` per event type; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in EVENT_TYPES:
        path = directory / schema_file_name(event_type)
        path.write_text(render_schema(event_type), encoding="utf-8")
        written.append(path)
    return written


def stale_schema_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of exported files that are missing or differ from what the models say now."""
    stale = []
    for event_type in EVENT_TYPES:
        path = directory / schema_file_name(event_type)
        if not path.exists() or path.read_text(encoding="utf-8") != render_schema(event_type):
            stale.append(path.name)
    return stale
