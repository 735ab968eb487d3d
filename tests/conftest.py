"""Shared test set-up: the repository root, and isolation from the developer's RETRAIN_* environment."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_ambient_retrain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests read the environment: start each test from a clean one (the tests' own RETRAIN_TEST_* kept)."""
    import os

    for name in list(os.environ):
        if name.startswith("RETRAIN_") and not name.startswith("RETRAIN_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _state_dir(
    _no_ambient_retrain_settings: None, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Detectors keep their state stores in the test's temporary directory, not in the working tree."""
    monkeypatch.setenv("RETRAIN_STATE_DIR", str(tmp_path_factory.mktemp("state")))
