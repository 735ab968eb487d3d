"""Fitted models and registry versions for the scorer's integration tests."""

from __future__ import annotations

from sklearn.tree import DecisionTreeClassifier

from retrain.decisions.training import FittedModel
from retrain.producers.streams import GeneratorSource
from retrain.registry import ModelRegistry, ModelVersionInfo

KEY = "scorer-integration-key-0123456789abcdef"
WINDOW = {"n_samples": 2_000, "first_label_timestamp": None, "last_label_timestamp": None}


def sea_tree(depth: int) -> FittedModel:
    examples = list(GeneratorSource("sea", (0,), (), 2_000, seed=1))
    tree = DecisionTreeClassifier(max_depth=depth, random_state=0)
    tree.fit([[e.features[name] for name in ("0", "1", "2")] for e in examples], [e.target for e in examples])
    return FittedModel(tree, ["0", "1", "2"], "classification")


def promote(registry: ModelRegistry, model_id: str, model: object) -> ModelVersionInfo:
    info = registry.register(
        model_id, model, n_samples=2_000, metrics={}, training_window=WINDOW, trigger_event_id=None
    )
    return registry.promote(model_id, info.version)
