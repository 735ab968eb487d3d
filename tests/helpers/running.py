"""A service's consume loop running in a thread of the test, with its metrics in a private registry."""

from __future__ import annotations

import faulthandler
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from retrain.settings import Settings


class RunningService:
    def __init__(self, build: Callable[..., object], settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.loop = build(settings, registry=self.registry, serve=False)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    @property
    def service(self):
        return self.loop.service

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def wait_for(self, name: str, at_least: float, timeout_s: float = 120.0, **labels: str) -> float:
        return self.wait_until(
            lambda: self.value(name, **labels) >= at_least, f"{name}{labels} >= {at_least}", timeout_s
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return time.monotonic()
            if not self.thread.is_alive():
                raise AssertionError(f"the service's loop died while waiting for {what}")
            time.sleep(0.1)
        faulthandler.dump_traceback(all_threads=True)  # where the service is stuck, for the test's output
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")

    def wait_assigned(self, timeout_s: float = 120.0) -> None:
        """Until the group has given this service its partitions (the first join can take a while)."""
        self.wait_until(lambda: bool(self.loop.assigned), "a partition assignment", timeout_s)

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the service did not stop within 30 s"
