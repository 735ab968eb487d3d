"""Shared test set-up: the repository root, and isolation from the developer's RETRAIN_* environment."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_ambient_retrain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests read the environment: start each test from a clean one (the broker fixture excepted)."""
    import os

    for name in list(os.environ):
        if name.startswith("RETRAIN_") and name != "RETRAIN_TEST_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
