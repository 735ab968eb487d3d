"""The compact per-model state: error windows as bits while they can be, metric series as arrays.

Each representation is checked against the one it replaces (a float32 array, prometheus-client's children), so
a regression in either the size or the values read back shows up here, without timing anything.
"""

from __future__ import annotations

import pickle
import random
import re
from array import array

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from retrain.consumers.metrics import ModelSeries
from retrain.decisions.policy import ModelWatch, PolicyConfig
from retrain.decisions.ring import ErrorRing
from tests.helpers.policy_stream import SEED, stream


def _writes(rng: random.Random, size: int, count: int, values: list[float]) -> list[tuple[int, float]]:
    return [(rng.randrange(-size, size), rng.choice(values)) for _ in range(count)]


@pytest.mark.parametrize(
    "values, packed",
    [([0.0, 1.0], True), ([0.0, 1.0, 0.25], False), ([0.0, 1.0, -0.0], False), ([0.0, 1.0, 3.1e-3, 7.0], False)],
)
def test_a_ring_reads_back_what_a_float32_array_would(values, packed):
    rng = random.Random(SEED)
    reference, ring = array("f", bytes(4 * 37)), ErrorRing(37)
    for slot, value in _writes(rng, 37, 400, values):
        reference[slot] = value
        ring[slot] = value
    assert [ring[i] for i in range(-37, 37)] == [reference[i] for i in range(-37, 37)]
    assert ring[5:30] == reference[5:30].tolist() and ring[:] == reference.tolist()
    assert (ring.typecode == "bit") is packed
    restored = pickle.loads(pickle.dumps(ring))
    assert restored == reference  # pickled as the float array it replaces
    assert ErrorRing.of(restored)[:] == ring[:] and ErrorRing.of(restored).typecode == ring.typecode


def test_a_zeroed_ring_reads_zeros_and_keeps_its_representation():
    ring = ErrorRing(20)
    ring[3], ring[19] = 1.0, 0.5
    ring.zero()
    assert ring[:] == [0.0] * 20 and ring.typecode == "f"


@pytest.mark.parametrize("task, typecode", [("classification", "bit"), ("regression", "f")])
def test_a_full_change_history_stays_at_its_length_and_classifiers_keep_one_bit_per_error(task, typecode):
    config = PolicyConfig(task=task, change_history=3_000, performance_window=200)
    examples, _ = stream(SEED, ((0.2, 4_000),))
    if task == "regression":
        examples = tuple(e.model_copy(update={"prediction": float(e.prediction) + 0.5}) for e in examples)
    watch = ModelWatch("churn", config, version=1)
    for example in examples:
        watch.observe(example)
    history = watch._history
    assert len(history) == config.change_history and len(watch._recent_errors()) == config.change_history
    assert history.typecode == typecode and watch._rolling.typecode == typecode
    if task == "classification":
        assert history.nbytes == -(-config.change_history // 8)
    restored = pickle.loads(pickle.dumps(watch))
    assert b"ErrorRing" not in pickle.dumps(watch)  # the snapshot layout is the float arrays', as before
    assert restored._history.typecode == typecode and restored._recent_errors() == watch._recent_errors()


def _exposition(registry: CollectorRegistry) -> list[str]:
    """Sample lines, sorted, with the _created timestamps' values dropped (they differ by the clock alone)."""
    text = generate_latest(registry).decode()
    return sorted(re.sub(r"(_created\{.*\}) .*", r"\1", line) for line in text.splitlines())


def test_model_series_expose_what_prometheus_client_children_would():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = ModelSeries("counter", "x_events_total", "Events", "reason", ours)
    gauge = ModelSeries("gauge", "x_accuracy", "Accuracy", None, ours)
    their_counter = Counter("x_events_total", "Events", ["model_id", "reason"], registry=theirs)
    their_gauge = Gauge("x_accuracy", "Accuracy", ["model_id"], registry=theirs)
    counter.start("a", "drift", "volume")
    their_counter.labels("a", "drift"), their_counter.labels("a", "volume")
    for model, reason, amount in [("a", "drift", 1.0), ("b", "late", 2.5), ("a", "late", 1.0), ("a", "drift", 1.0)]:
        counter.inc(model, reason, amount)
        their_counter.labels(model, reason).inc(amount)
    for model, value in [("a", 0.5), ("b", 0.75), ("a", 0.25)]:
        gauge.set(model, value)
        their_gauge.labels(model).set(value)
    gauge.start("c")
    their_gauge.labels("c")
    assert _exposition(ours) == _exposition(theirs)
    with pytest.raises(ValueError):
        counter.inc("a", "drift", -1.0)
