"""The watchful range assignor: kafka-python's range assignment, and a note of the topics it had to leave out."""

from __future__ import annotations

from types import SimpleNamespace

from kafka.coordinator.assignors.range import RangePartitionAssignor

from retrain.assignor import GIVE_UP_S, GRACE_S, WatchfulRangeAssignor


class Cluster:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


def member(member_id: str, *topics: str) -> SimpleNamespace:
    return SimpleNamespace(member_id=member_id, group_instance_id=None, metadata=SimpleNamespace(topics=list(topics)))


def assigned(assignment) -> dict[str, dict[str, list[int]]]:
    return {member_id: dict(a.assignment) for member_id, a in assignment.items()}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_assigns_exactly_as_kafka_pythons_range_assignor_and_notes_nothing_when_all_is_known():
    cluster = Cluster({"predictions": {0, 1, 2}, "labels": {0, 1, 2}})
    members = [member("a", "predictions", "labels"), member("b", "predictions", "labels")]
    assignor = WatchfulRangeAssignor()
    result = assigned(assignor.assign(cluster, members))
    assert result == assigned(RangePartitionAssignor.assign(cluster, members))
    assert result == {"a": {"labels": [0, 1], "predictions": [0, 1]}, "b": {"labels": [2], "predictions": [2]}}
    assert assignor.name == "range" and assignor.left_out == frozenset()
    assert not assignor.must_reassign()


def test_a_topic_without_metadata_is_noted_and_a_rebalance_is_due_once_the_metadata_has_it():
    clock = Clock()
    cluster = Cluster({"retrain-events": {0}})
    assignor = WatchfulRangeAssignor(clock)
    result = assigned(assignor.assign(cluster, [member("t", "labeled-examples", "retrain-events")]))
    assert result == {"t": {"retrain-events": [0]}}  # labeled-examples went to nobody
    assert assignor.left_out == frozenset({"labeled-examples"})

    cluster.partitions["labeled-examples"] = {0, 1}
    clock.now += GRACE_S - 0.1
    assert not assignor.must_reassign()  # kafka-python's own rebalance on a metadata change gets its chance
    clock.now += 0.1
    assert assignor.must_reassign()

    assignor.assign(cluster, [member("t", "labeled-examples", "retrain-events")])  # the rebalance
    assert assignor.left_out == frozenset() and not assignor.must_reassign()


def test_a_rebalance_is_due_after_give_up_s_even_if_the_metadata_still_lacks_the_topic():
    clock = Clock()
    assignor = WatchfulRangeAssignor(clock)
    assignor.assign(Cluster({}), [member("t", "labeled-examples")])
    clock.now += GIVE_UP_S - 0.1
    assert not assignor.must_reassign()
    clock.now += 0.1
    assert assignor.must_reassign()
