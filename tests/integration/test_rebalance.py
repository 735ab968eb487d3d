"""Three detector instances share six partitions; one is killed mid-stream: the others take over, nothing is lost.

Every model drifts, and the instance is killed while the models' episodes are open (detected, first fit not yet
due), so whichever partitions it owned, their new owners must restore the episodes from the snapshots and ask
for the fits of the *same* episode: one change point, one detection, fits 1 and 2, per model.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaAdminClient, TopicPartition

from retrain.consumers.decoding import decode_record
from retrain.producers.scored import Scored, delayed_shuffled_labels, sea_model, sea_stream
from retrain.schemas import RetrainEvent
from retrain.settings import KafkaSettings, TopicSettings
from retrain.topics import ensure_topics, pipeline_topics
from tests.helpers.kafka_io import LABEL_WINDOW, make_consumer, make_producer, produce, read_all, topic_admin, written
from tests.helpers.processes import Detector, sample, scrape, wait_all_joined

pytestmark = pytest.mark.kafka

MODELS = 8
PER_MODEL = 6_000
DRIFT_AT = 1_500  # every model: variant 0 -> 3 at its 1,500th example; fits at 1,500 and 3,750 post-change
INSTANCES = 3


def drifting_models() -> list[Scored]:
    model = sea_model()
    streams = [sea_stream(model, n=PER_MODEL, drift_at=DRIFT_AT, model_id=f"rb{m}", seed=60 + m) for m in range(MODELS)]
    return [stream[i] for i in range(PER_MODEL) for stream in streams]


@pytest.mark.parametrize("state_store", ["rocksdb", pytest.param("memory", marks=pytest.mark.clients("kafka-python"))])
def test_a_killed_instance_s_partitions_and_episodes_move_to_the_others(
    kafka_settings: KafkaSettings,
    admin: KafkaAdminClient,
    topic_settings: TopicSettings,
    unique: str,
    tmp_path,
    state_store: str,
):
    """rocksdb: each instance has a state directory of its own (as on separate machines), so the partitions it
    takes over are rebuilt from their changelog. memory: the episodes come back from chunked snapshots."""
    topics = topic_settings.model_copy(update={"stream_partitions": 6})
    assert ensure_topics(topic_admin(admin), pipeline_topics(topics)).ok
    stream = drifting_models()
    total = len(stream)
    group = f"detector-{unique}"
    # Snapshots of a few KB in 1 KiB chunks: the new owners restore episodes from chunked snapshots (the layout a
    # partition with hundreds of models needs at the default size).
    chunked = {"RETRAIN_DETECTOR_SNAPSHOT_RECORD_BYTES": "1024", "RETRAIN_DETECTOR_STATE_STORE": state_store}
    detectors = [
        Detector(kafka_settings, topics, group, RETRAIN_STATE_DIR=str(tmp_path / f"instance-{i}"), **chunked)
        for i in range(INSTANCES)
    ]
    out_partitions = [TopicPartition(topics.labeled_examples, p) for p in range(topics.stream_partitions)]
    watcher = make_consumer(kafka_settings, None)
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    try:
        for detector in detectors:
            detector.start()
        time.sleep(8)  # let the three join the group before the stream starts
        producing = threading.Thread(
            target=produce,
            args=(producer, topics, stream, delayed_shuffled_labels(stream, LABEL_WINDOW)),
            daemon=True,
        )
        producing.start()
        # Kill one while every model's episode is open: detected (~1,550 examples in) but not yet fitted (3,000).
        deadline = time.monotonic() + 180
        while written(watcher, out_partitions) < MODELS * 2_300:
            assert time.monotonic() < deadline, "the detectors are stuck"
            time.sleep(0.05)
        victim_joined = detectors[1].joined()
        detectors[1].kill()
        producing.join(timeout=120)
        assert not producing.is_alive()

        survivors = [d for i, d in enumerate(detectors) if i != 1]
        ids = wait_all_joined(kafka_settings, topics, total, survivors)
        restores = {"restored": 0.0, "incomplete": 0.0}  # partitions the survivors carried on from a snapshot
        changelog_read = 0.0
        for survivor in survivors:
            text = scrape(survivor.metrics_port)
            for outcome in restores:
                restores[outcome] += sample(text, f'retrain_state_restores_total{{outcome="{outcome}"}}') or 0
            changelog_read += sample(text, "retrain_state_restore_records_total") or 0
        for i, detector in enumerate(detectors):
            if i != 1:
                assert detector.terminate() == 0
    finally:
        watcher.close()
        producer.close()
        for detector in detectors:
            detector.kill_if_running()

    assert victim_joined > 0  # the killed instance owned partitions and was working on them
    assert set(ids) == {item.prediction.prediction_id for item in stream}
    duplicates = sum(ids.values()) - total
    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, topics.retrain_events, 1)]
    print(
        f"\n{total:,} joined by 3 -> 2 instances (the killed one had made {victim_joined:,.0f} joins); "
        f"{duplicates:,} joined twice; {len(events)} retrain events; "
        f"{restores['restored']:.0f} partitions restored ({state_store}); "
        f"{changelog_read:,.0f} changelog records read by the survivors"
    )
    assert duplicates <= 1_000  # at most one uncommitted poll of the killed instance
    if state_store == "memory":
        snapshots = read_all(kafka_settings, topics.detector_state, topics.stream_partitions)
        assert {r.key for r in snapshots if b"." in r.key}, "no snapshot was large enough to be chunked"
    else:
        assert changelog_read > 0, "the survivors rebuilt nothing from the changelog"
    assert restores["restored"] >= 1 and restores["incomplete"] == 0, restores  # the victim's, from their chunks
    assert read_all(kafka_settings, topics.dead_letters, 1) == []
    by_model: dict[str, list[RetrainEvent]] = {}
    for event in events:
        by_model.setdefault(event.model_id, []).append(event)
    assert sorted(by_model) == [f"rb{m}" for m in range(MODELS)]
    for model_id, model_events in by_model.items():
        episodes = {(e.evidence.values["change_at"], e.evidence.values["detected_at"]) for e in model_events}
        assert len(episodes) == 1, (model_id, episodes)
        ((change_at, detected_at),) = episodes
        assert abs(change_at - DRIFT_AT) <= 2 * LABEL_WINDOW and DRIFT_AT <= detected_at <= DRIFT_AT + 1_000
        assert sorted({e.evidence.values["refit"] for e in model_events}) == [1.0, 2.0], model_id
        assert len(model_events) <= 3, model_id  # a fit's event repeats only if the kill fell right after it
