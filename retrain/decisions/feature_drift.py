"""Label-free data drift: one detector per feature of the prediction stream. Pure Python, no Kafka.

Labels may come days late, or never; the features of what is being scored are there at once. A change in a
feature's distribution is an early sign that the model may be going stale, before any error is measured. This
is opt-in: a feature shift does not always hurt a model, and a retrain on it costs a fit.
"""

from __future__ import annotations

from collections.abc import Mapping

from retrain.decisions.drift import Detection, DetectorSpec, DriftMonitor


class FeatureDriftMonitor:
    """Watches the first ``max_features`` feature names it sees, each with its own detector."""

    def __init__(self, spec: DetectorSpec | None = None, max_features: int = 64) -> None:
        self.spec = spec or DetectorSpec.of("ADWIN")
        # Feature values are not 0/1: only the detectors of real-valued streams apply (checked here, once).
        self.spec.build("regression")
        if max_features < 1:
            raise ValueError("max_features must be at least 1")
        self.max_features = max_features
        self.monitors: dict[str, DriftMonitor] = {}

    def reset(self) -> None:
        self.monitors.clear()

    def update(self, features: Mapping[str, float]) -> list[tuple[str, Detection]]:
        """Feed one prediction's features; return (feature, detection) for every feature that changed."""
        changed = []
        for name, value in features.items():
            monitor = self.monitors.get(name)
            if monitor is None:
                if len(self.monitors) >= self.max_features:
                    continue
                monitor = self.monitors[name] = DriftMonitor((self.spec,), task="regression")
            for detection in monitor.update(float(value)):
                changed.append((name, detection))
        return changed
