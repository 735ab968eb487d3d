"""Metrics handed to Prometheus once per poll batch expose what per-record updates would have."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from retrain.consumers.metrics import _LATENCY_BUCKETS, observe_many


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("x_latency_seconds", "Latency", ["service"], buckets=_LATENCY_BUCKETS, registry=registry)


def test_observe_many_exposes_what_observing_one_by_one_does() -> None:
    rng = random.Random(3)
    # On the bounds, between them, past the last finite one, zero.
    amounts = [*_LATENCY_BUCKETS, 0.0, 7200.0, *(rng.expovariate(1 / 30) for _ in range(5_000))]
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    single, many = histogram(one_by_one).labels("detector"), histogram(batched).labels("detector")
    for start in range(0, len(amounts), 777):
        batch = amounts[start : start + 777]
        for amount in batch:
            single.observe(amount)
        observe_many(many, batch)
    observe_many(many, [])  # an empty batch changes nothing

    def exposed(registry: CollectorRegistry) -> list[str]:
        # The sum is added up per batch first: equal up to rounding, compared below.
        skip = ("_created", "_sum")
        return [line for line in generate_latest(registry).decode().splitlines() if not any(s in line for s in skip)]

    assert exposed(batched) == exposed(one_by_one)
    total = batched.get_sample_value("x_latency_seconds_sum", {"service": "detector"})
    assert total == pytest.approx(
        one_by_one.get_sample_value("x_latency_seconds_sum", {"service": "detector"}), rel=1e-12
    )
    assert batched.get_sample_value("x_latency_seconds_count", {"service": "detector"}) == len(amounts)
