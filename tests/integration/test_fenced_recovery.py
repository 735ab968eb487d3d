"""exactly_once: a detector whose transactional producer is fenced mid-stream replaces it and loses nothing.

Another producer takes the detector's transactional id (``init_transactions`` bumps the epoch: what a broker does
to a transaction that outlived ``transaction.timeout.ms``, or what a second instance with the same id does). The
detector's next transaction is refused as fenced; it closes that producer, makes a new one under the same id,
reads its uncommitted batch again and goes on. A ``read_committed`` reader sees every join exactly once.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from kafka import TopicPartition

from retrain.consumers.decoding import decode_record
from retrain.producers.scored import delayed_shuffled_labels, sea_model, sea_stream
from retrain.schemas import LabeledExample
from retrain.settings import KafkaSettings, TopicSettings
from tests.helpers.kafka_io import LABEL_WINDOW, make_consumer, make_producer, produce, read_all, written
from tests.helpers.processes import Detector, wait_all_joined

pytestmark = pytest.mark.kafka

MODELS = 3
PER_MODEL = 3_000


def transactional_detector(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> tuple[Detector, str, KafkaSettings]:
    """A detector process under exactly_once, its transactional id, and the settings of a read_committed reader."""
    transactional_id = f"detector-{unique}"
    detector = Detector(
        kafka_settings,
        topics,
        f"detector-{unique}",
        RETRAIN_KAFKA_PROCESSING_GUARANTEE="exactly_once",
        RETRAIN_KAFKA_TRANSACTIONAL_ID=transactional_id,
    )
    return detector, transactional_id, kafka_settings.model_copy(update={"processing_guarantee": "exactly_once"})


def test_a_fenced_detector_takes_its_transactional_id_back_and_joins_everything_once(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str
):
    model = sea_model()
    streams = [sea_stream(model, n=PER_MODEL, drift_at=None, model_id=f"fence{m}", seed=60 + m) for m in range(MODELS)]
    stream = [s[i] for i in range(PER_MODEL) for s in streams]
    total, half = len(stream), len(stream) // 2
    detector, transactional_id, reading = transactional_detector(kafka_settings, created_topics, unique)
    out = [TopicPartition(created_topics.labeled_examples, p) for p in range(created_topics.stream_partitions)]
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    watcher = make_consumer(reading, None)
    try:
        detector.start()
        first = stream[:half]
        produce(producer, created_topics, first, delayed_shuffled_labels(first, LABEL_WINDOW))
        deadline = time.monotonic() + 120
        while written(watcher, out) < half:  # the first half joined and committed
            if time.monotonic() > deadline:
                raise AssertionError(f"stuck below {half} labeled examples:\n{detector.stuck_report(200)}")
            assert detector.process.poll() is None, f"the detector exited:\n{detector.output()[-3_000:]}"
            time.sleep(0.2)

        intruder = make_producer(kafka_settings, transactional_id=transactional_id)
        intruder.init_transactions()  # the detector's producer is fenced from now on
        intruder.close()

        second = stream[half:]
        produce(producer, created_topics, second, delayed_shuffled_labels(second, LABEL_WINDOW))
        try:
            ids = wait_all_joined(reading, created_topics, total, [detector], timeout_s=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{detector.stuck_report(200)}") from None
        kinds = detector.recoveries()
        output = detector.output()
        assert detector.terminate() == 0, detector.output()[-3_000:]
    finally:
        watcher.close()
        producer.close()
        detector.kill_if_running()

    assert set(ids) == {item.prediction.prediction_id for item in stream}
    assert sum(ids.values()) == total  # a read_committed reader sees each join once, across the fencing
    replaced = output.count("a new transactional producer has replaced the fenced one")
    print(f"\nfenced mid-stream: {total:,} of {total:,} joined once; producer replaced {replaced}x; recoveries {kinds}")
    assert replaced == 1
    # The fencing surfaces where the producer first meets it: its sends failing at the flush (PublishFailed, then
    # the abort refused as fenced), or the commit itself (ProducerFencedError). Either way one batch was given up.
    assert sum(kinds.values()) >= 1, kinds


def test_a_detector_fenced_again_and_again_stops_and_names_the_transactional_id(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str
):
    # Fenced 4 times within 10 minutes: another live instance must be using the same id, and taking it back again
    # would only fence that one in turn. The detector stops, with nothing of its last batch visible.
    model = sea_model()
    stream = sea_stream(model, n=5 * 600, drift_at=None, model_id="pingpong", seed=70)
    chunks = [stream[i : i + 600] for i in range(0, len(stream), 600)]
    detector, transactional_id, reading = transactional_detector(kafka_settings, created_topics, unique)
    producer = make_producer(kafka_settings, linger_ms=20)
    try:
        detector.start()
        for number, chunk in enumerate(chunks):
            if number:
                intruder = make_producer(kafka_settings, transactional_id=transactional_id)
                intruder.init_transactions()
                intruder.close()
            produce(producer, created_topics, chunk, delayed_shuffled_labels(chunk, LABEL_WINDOW))
            deadline = time.monotonic() + 60
            while True:
                if number < 4:  # records, not end offsets (those count the transactions' commit markers too)
                    done = len(
                        read_all(reading, created_topics.labeled_examples, created_topics.stream_partitions)
                    ) >= 600 * (number + 1)
                else:
                    done = detector.process.poll() is not None
                if done:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"chunk {number} not handled:\n{detector.stuck_report(200)}")
                assert number == 4 or detector.process.poll() is None, detector.output()[-3_000:]
                time.sleep(0.2)
        exit_code = detector.process.returncode
        output = detector.output()
        visible = Counter(
            decode_record(r, LabeledExample).prediction_id
            for r in read_all(reading, created_topics.labeled_examples, created_topics.stream_partitions)
        )
    finally:
        producer.close()
        detector.kill_if_running()

    print(f"\nfenced 4 times: exit code {exit_code}; {sum(visible.values()):,} labeled examples visible")
    assert exit_code != 0
    assert output.count("a new transactional producer has replaced the fenced one") == 3
    assert "fenced 4 times in 600 s; another live instance must be using the same transactional id" in output
    # Each of the first four chunks joined exactly once; the fifth chunk's batch was never committed.
    assert set(visible) == {item.prediction.prediction_id for chunk in chunks[:4] for item in chunk}
    assert sum(visible.values()) == 4 * 600
