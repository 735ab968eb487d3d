"""The generated reference pages (docs/configuration.md, docs/events.md) are current with the code.

They are rendered from the settings classes and the event models by :mod:`retrain.reference`; a page that differs
from its rendering fails here, as a stale JSON Schema export fails in test_schema_export.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain import reference
from retrain.schemas.events import EVENT_TYPES
from retrain.settings import Settings

HOW = "regenerate it with `make docs` (or `.venv/bin/python -m retrain.reference`) and commit the result"


@pytest.mark.parametrize("name", sorted(reference.PAGES))
def test_generated_page_is_current(name: str) -> None:
    path = reference.DOCS_DIR / name
    assert path.is_file(), f"docs/{name} is missing: {HOW}"
    on_disk = path.read_text(encoding="utf-8")
    rendered = reference.render_pages()[name]
    assert on_disk == rendered, f"docs/{name} is stale (it differs from the code it documents): {HOW}"


def test_every_setting_and_event_field_is_on_its_page() -> None:
    pages = reference.render_pages()
    for group in Settings.model_fields.values():
        settings_class = group.default_factory
        for name, field in settings_class.model_fields.items():  # type: ignore[union-attr]
            for variable in reference._env_names(settings_class, name, field):  # type: ignore[arg-type]
                assert f"`{variable}`" in pages["configuration.md"], variable
            assert field.description, f"{settings_class.__name__}.{name} has no description"  # type: ignore[union-attr]
    for event_type in EVENT_TYPES:
        assert f"## {event_type.__name__}\n" in pages["events.md"], event_type.__name__
        for name in event_type.model_fields:
            assert f"| `{name}` |" in pages["events.md"], f"{event_type.__name__}.{name}"


def test_rendering_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = reference.render_pages()
    monkeypatch.setenv("RETRAIN_KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9093")
    monkeypatch.setenv("RETRAIN_TOPIC_PREDICTIONS", "renamed-predictions")
    monkeypatch.setenv("RETRAIN_TOPIC_STREAM_PARTITIONS", "12")
    assert reference.render_pages() == before


def test_check_names_stale_pages_and_write_makes_them_current(tmp_path: Path, capsys) -> None:
    assert reference.main(["--check", "--directory", str(tmp_path)]) == 1
    assert "configuration.md" in capsys.readouterr().out
    reference.main(["--directory", str(tmp_path)])
    assert reference.main(["--check", "--directory", str(tmp_path)]) == 0
    (tmp_path / "events.md").write_text("edited by hand\n", encoding="utf-8")
    assert reference.main(["--check", "--directory", str(tmp_path)]) == 1
    assert "events.md" in capsys.readouterr().out
