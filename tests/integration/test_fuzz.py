"""Fuzz the detector through a real broker: 10,000 bad payloads interleaved with 3,000 good prediction/label pairs.

Every bad payload must land in the dead-letter topic, once, with the reason its kind of damage calls for and its
original bytes (truncated only past 512 KiB); every good pair must be joined exactly once; the service must not die.
The payloads are generated from fixed seeds, so every count below is exact.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_detector
from retrain.producers.scored import Scored, delayed_shuffled_labels, sea_model, sea_stream
from retrain.schemas import DeadLetter, LabeledExample, LabelEvent, PredictionEvent, decode, encode
from retrain.schemas.events import MAX_DEAD_LETTER_PAYLOAD_BYTES
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, Settings, TopicSettings
from tests.helpers.fuzz_corpus import (
    CATEGORIES,
    HUGE_900K,
    HUGE_KEY_EVERY,
    LABEL_WINDOW,
    MAX_KEY_BYTES,
    MODELS,
    N_BAD,
    PAIRS_PER_MODEL,
    PER_CATEGORY,
    SEED,
    Bad,
    dumps,
    generate_bad,
    template,
)
from tests.helpers.kafka_io import make_consumer, make_producer
from tests.helpers.running import RunningService

pytestmark = pytest.mark.kafka


def good_sequence(stream: list[Scored], seed: int) -> list[tuple[str, bytes, bytes]]:
    """One model's records: its predictions in order, each window's labels (shuffled) after the next window's."""
    labels = delayed_shuffled_labels(stream, LABEL_WINDOW, seed=seed)
    out = []
    for start in range(0, len(stream) + LABEL_WINDOW, LABEL_WINDOW):
        for item in stream[start : start + LABEL_WINDOW]:
            out.append(("predictions", item.prediction.model_id.encode(), encode(item.prediction)))
        for label in labels[start - LABEL_WINDOW : start] if start else []:
            out.append(("labels", label.model_id.encode(), encode(label)))
    return out


def interleave(rng: random.Random, queues: list[list[Any]]) -> Iterator[Any]:
    """Merge the queues at random, each kept in its own order (picked in proportion to what it has left)."""
    positions = [0] * len(queues)
    left = [len(queue) for queue in queues]
    while any(left):
        (i,) = rng.choices(range(len(queues)), weights=left)
        yield queues[i][positions[i]]
        positions[i] += 1
        left[i] -= 1


# -- the test ---------------------------------------------------------------------------------------------------


def read_topic(kafka_settings: KafkaSettings, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic``, from the beginning to the end offsets of now; fails if it cannot read them all."""
    consumer = make_consumer(kafka_settings, None)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assert partitions, f"{topic} has no partitions"
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(assigned)
        records = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in assigned):
            assert time.monotonic() < deadline, f"could not read {topic} to its end within {timeout_s}s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def samples(service: RunningService, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of a metric, by its labels."""
    out = {}
    for metric in service.registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def dead_letters_by_reason(service: RunningService) -> Counter[str]:
    counts: Counter[str] = Counter()
    for labels, value in samples(service, "retrain_dead_letters_total").items():
        assert dict(labels)["service"] == "detector"
        counts[dict(labels)["reason"]] += int(value)
    return +counts


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[KafkaProducer]:
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=256 * 1024)
    yield producer
    producer.close()


# What the seed gives: (category, reason) -> payloads. Binary garbage is mostly invalid UTF-8; some of it (control
# bytes, Avro framing that happens to be ASCII) is UTF-8 but not JSON; tombstones and empty values are "empty".
EXPECTED_BY_CATEGORY = {
    ("invalid_json", "invalid_json"): 1_250,
    ("wrong_types", "validation"): 1_250,
    ("nan_infinity", "validation"): 1_250,
    ("huge_strings", "validation"): 1_250,
    ("unknown_schema_version", "unsupported_schema_version"): 1_250,
    ("missing_keys", "validation"): 1_250,
    ("binary_garbage", "invalid_utf8"): 1_119,
    ("binary_garbage", "invalid_json"): 58,
    ("binary_garbage", "empty"): 73,
    ("non_object_json", "not_an_object"): 1_250,
}


def test_generator_is_deterministic_and_each_category_damages_a_valid_event():
    first, again = generate_bad(), generate_bad()
    assert first == again
    assert Counter(bad.category for bad in first) == dict.fromkeys(CATEGORIES, PER_CATEGORY)
    assert Counter((bad.category, bad.reason) for bad in first) == EXPECTED_BY_CATEGORY
    assert Counter(bad.role for bad in first) == {"predictions": 5_007, "labels": 4_993}
    assert sum(1 for bad in first if bad.value is None) == 34  # tombstones
    assert (
        sum(1 for bad in first if bad.key is not None and len(bad.key) > MAX_KEY_BYTES)
        == PER_CATEGORY // HUGE_KEY_EVERY
    )
    rng = random.Random(0)
    for role, event_type in (("predictions", PredictionEvent), ("labels", LabelEvent)):
        decode(dumps(template(rng, role, 0)), event_type)  # the undamaged template is a valid event
    sizes = sorted(len(bad.value or b"") for bad in first if bad.category == "huge_strings")
    assert sizes[-HUGE_900K:] == [s for s in sizes if s > MAX_DEAD_LETTER_PAYLOAD_BYTES]
    assert all(s < 1_000_000 for s in sizes) and sizes[0] >= 1_000


def test_fuzzed_input_goes_to_dead_letters_with_its_reason_and_good_input_is_joined(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str, producer: KafkaProducer
):
    topics = created_topics
    settings = Settings(
        kafka=kafka_settings,
        topics=topics,
        broker=BrokerSettings(),
        # Event-time TTLs far beyond the stream's 3,000 s: nothing good may expire while the bad input goes by.
        detector=DetectorSettings(group_id=f"detector-{unique}", label_ttl_s=86_400, prediction_ttl_s=86_400),
    )
    bad = generate_bad()
    model = sea_model()
    streams = [
        sea_stream(model, n=PAIRS_PER_MODEL, drift_at=None, model_id=m, seed=11 + i) for i, m in enumerate(MODELS)
    ]
    good = [good_sequence(stream, seed=i) for i, stream in enumerate(streams)]
    good_ids = {item.prediction.prediction_id for stream in streams for item in stream}
    sent: Counter[str] = Counter()
    topic_of = {"predictions": topics.predictions, "labels": topics.labels}

    detector = RunningService(run_detector, settings)
    try:
        detector.wait_assigned(timeout_s=60)
        bad_futures = []
        for item in interleave(random.Random(SEED + 1), [*good, bad]):
            if isinstance(item, Bad):
                future = producer.send(topic_of[item.role], key=item.key, value=item.value)
                bad_futures.append((future, item))
                sent[item.role] += 1
            else:
                role, key, value = item
                producer.send(topic_of[role], key=key, value=value)
                sent[role] += 1
        producer.flush(timeout=60)
        where = {}
        for future, item in bad_futures:
            metadata = future.get(timeout=30)
            where[(metadata.topic, metadata.partition, metadata.offset)] = item
        assert len(where) == N_BAD and sum(sent.values()) == N_BAD + 6_000

        def done() -> bool:
            consumed = {
                role: detector.value("retrain_records_consumed_total", service="detector", topic=topic_of[role])
                for role in topic_of
            }
            return (
                consumed == sent
                and detector.value("retrain_joins_total", outcome="joined") >= 3_000
                and sum(dead_letters_by_reason(detector).values()) >= N_BAD
            )

        detector.wait_until(done, "every record consumed, 3,000 joins and 10,000 dead letters", timeout_s=120)
        assert detector.thread.is_alive(), "the detector's loop died"
    finally:
        detector.stop()

    # The metrics: every bad payload counted once under its reason; every good pair joined once, nothing else.
    expected_reasons = Counter(item.reason for item in bad)
    assert dead_letters_by_reason(detector) == expected_reasons
    assert sum(dead_letters_by_reason(detector).values()) == N_BAD
    joins = {dict(labels)["outcome"]: value for labels, value in samples(detector, "retrain_joins_total").items()}
    assert {outcome: n for outcome, n in joins.items() if n} == {"joined": 3_000}, joins
    assert detector.value("retrain_join_pending", side="prediction") == 0
    assert detector.value("retrain_join_pending", side="label") == 0

    # The dead-letter topic: one letter per bad record, at its position, with its bytes, key and reason.
    records = read_topic(kafka_settings, topics.dead_letters)
    letters = [(record, decode_record(record, DeadLetter)) for record in records]
    assert len(letters) == N_BAD
    positions = [(letter.source_topic, letter.source_partition, letter.source_offset) for _, letter in letters]
    assert len(set(positions)) == N_BAD
    assert set(positions) == set(where)
    reasons_by_category: Counter[tuple[str, str]] = Counter()
    for (record, letter), position in zip(letters, positions, strict=True):
        item = where[position]
        reasons_by_category[(item.category, letter.error_reason)] += 1
        assert letter.error_reason == item.reason, (item.category, item.value[:200] if item.value else item.value)
        assert letter.error_message.strip()
        assert letter.error_class == "retrain.schemas.codec.EventDecodeError"
        assert letter.service == "detector"
        assert letter.source_timestamp is not None
        assert letter.payload_size == len(item.value or b"")
        assert letter.payload() == item.stored()
        assert letter.original_key() == (None if item.key is None else item.key[:MAX_KEY_BYTES])
        headers = dict(record.headers)
        assert headers["__connect.errors.reason"] == item.reason.encode()
    assert reasons_by_category == Counter((item.category, item.reason) for item in bad) == EXPECTED_BY_CATEGORY
    assert {category for category, _ in reasons_by_category} == set(CATEGORIES)
    assert Counter(sha(letter.payload()) for _, letter in letters) == Counter(sha(item.stored()) for item in bad)
    truncated = [letter for _, letter in letters if letter.payload_size > len(letter.payload())]
    assert len(truncated) == HUGE_900K
    assert all(len(letter.payload()) == MAX_DEAD_LETTER_PAYLOAD_BYTES for letter in truncated)
    cut_keys = [letter for _, letter in letters if len(letter.original_key() or b"") == MAX_KEY_BYTES]
    assert len(cut_keys) == PER_CATEGORY // HUGE_KEY_EVERY  # 50 keys of 8 KiB, kept to their first 6 KiB

    # The labeled examples: exactly the good pairs, each once, as they were sent.
    examples = [decode_record(record, LabeledExample) for record in read_topic(kafka_settings, topics.labeled_examples)]
    assert len(examples) == 3_000
    assert {example.prediction_id for example in examples} == good_ids
    by_id = {item.prediction.prediction_id: item for stream in streams for item in stream}
    for example in examples:
        item = by_id[example.prediction_id]
        assert (example.features, example.prediction, example.label) == (
            item.prediction.features,
            item.prediction.prediction,
            item.label.label,
        )
