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
