"""Jobs and estimators for the fit-worker tests: importable by name, so a spawned worker process can run them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sklearn.tree import DecisionTreeClassifier


def add(a: int, b: int) -> int:
    return a + b


def fail(reason: str) -> None:
    error = RuntimeError("the job failed on purpose")
    error.reason = reason  # type: ignore[attr-defined]
    raise error


def die(code: int) -> None:
    os._exit(code)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def wait_for(path: str, timeout_s: float = 60.0) -> str:
    """Return once ``path`` exists: a job that runs until the test lets it finish."""
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return path


def touch(path: str) -> str:
    Path(path).touch()
    return path


class GatedTree(DecisionTreeClassifier):
    """A decision tree whose fit waits for a file to exist (``gate``): a fit that lasts until the test says."""

    def __init__(self, gate: str = "", random_state: int | None = 0) -> None:
        super().__init__(random_state=random_state)
        self.gate = gate

    def fit(self, X, y, sample_weight=None, check_input=True):
        wait_for(self.gate)
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)


class CrashingTree(DecisionTreeClassifier):
    """A fit that kills its process (as the OOM killer would)."""

    def fit(self, X, y, sample_weight=None, check_input=True):
        os._exit(9)
