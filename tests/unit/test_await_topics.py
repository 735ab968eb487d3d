"""A service joins its group only once its consumer knows every subscribed topic's partitions."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from retrain.consumers.runtime import ConsumeLoop
from retrain.kafka.kafka_python import KafkaPythonConsumer


class LateMetadataConsumer:
    """Knows a topic's partitions from its ``known_from``-th look on; records what the loop asks."""

    def __init__(self, known_from: dict[str, int]) -> None:
        self.known_from = known_from
        self.looks: dict[str, int] = {topic: 0 for topic in known_from}
        self.calls: list[tuple] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        self.looks[topic] += 1
        self.calls.append(("look", topic))
        return {0, 1, 2} if self.looks[topic] >= self.known_from[topic] else set()

    def subscribe(self, topics, listener=None) -> None:
        self.calls.append(("subscribe", tuple(topics)))

    def topics(self) -> set[str]:
        self.calls.append(("topics",))
        return set(self.known_from)


def loop_over(consumer: LateMetadataConsumer, topics: list[str], stop_after_waits: int | None = None):
    publisher = SimpleNamespace(producer=SimpleNamespace(transactional=False))
    service = SimpleNamespace(name="svc")
    loop = ConsumeLoop(service, KafkaPythonConsumer(consumer), publisher, topics)  # type: ignore[arg-type]
    waits: list[float] = []

    def wait(timeout: float | None = None) -> bool:  # the pause between looks, without the time
        waits.append(timeout)
        if stop_after_waits is not None and len(waits) >= stop_after_waits:
            loop.stop()
        return loop._stopping.is_set()

    loop._stopping.wait = wait  # type: ignore[method-assign]
    return loop, waits


def test_the_subscription_waits_for_every_topic_and_asks_again_only_for_the_missing_ones():
    consumer = LateMetadataConsumer({"predictions": 1, "labels": 3})
    loop, waits = loop_over(consumer, ["predictions", "labels"])
    loop.subscribe()
    assert consumer.calls == [
        ("look", "predictions"),
        ("look", "labels"),
        ("look", "labels"),
        ("look", "labels"),
        ("subscribe", ("predictions", "labels")),
        ("topics",),  # a metadata update after the subscription, before the first join
    ]
    assert waits == [0.5, 0.5]


def test_a_topic_still_missing_is_named_in_a_warning(caplog: pytest.LogCaptureFixture):
    consumer = LateMetadataConsumer({"labels": 4})
    loop, _ = loop_over(consumer, ["labels"])
    with caplog.at_level(logging.WARNING, logger="retrain.consumers.runtime"):
        loop.await_topics(warn_after_s=0.0)
    assert consumer.looks["labels"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        "svc: waiting for topics labels to exist (`retrain topics create` makes them)"
    ]


def test_a_stop_while_waiting_leaves_without_joining():
    consumer = LateMetadataConsumer({"labels": 10**9})
    loop, waits = loop_over(consumer, ["labels"], stop_after_waits=2)
    loop.subscribe()
    assert len(waits) == 2
    assert ("subscribe", ("labels",)) not in consumer.calls and ("topics",) not in consumer.calls
