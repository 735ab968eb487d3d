"""Fuzz the detector through a real broker: 10,000 bad payloads interleaved with 3,000 good prediction/label pairs.

Every bad payload must land in the dead-letter topic, once, with the reason its kind of damage calls for and its
original bytes (truncated only past 512 KiB); every good pair must be joined exactly once; the service must not die.
The payloads are generated from fixed seeds, so every count below is exact.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from consumers.decoding import decode_record
from consumers.detector import run_detector
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, Settings, TopicSettings
from schemas import DeadLetter, LabeledExample, LabelEvent, PredictionEvent, decode, encode
from schemas.events import MAX_DEAD_LETTER_PAYLOAD_BYTES
from schemas.types import MAX_TEXT_LENGTH
from tests.integration.kafka_io import make_consumer, make_producer
from tests.integration.running import RunningService
from tests.integration.streams import START, Scored, delayed_shuffled_labels, sea_model, sea_stream

pytestmark = pytest.mark.kafka

SEED = 20_261_128
N_BAD = 10_000
MODELS = ("fuzz-a", "fuzz-b", "fuzz-c")
PAIRS_PER_MODEL = 1_000  # 3,000 good prediction/label pairs in all
LABEL_WINDOW = 100  # a model's labels come one window after its predictions, shuffled within the window

# Each kind of damage, and the dead-letter reason the decoder must give it (binary garbage: see _garbage_reason).
CATEGORIES: dict[str, str | None] = {
    "invalid_json": "invalid_json",
    "wrong_types": "validation",
    "nan_infinity": "validation",
    "huge_strings": "validation",
    "unknown_schema_version": "unsupported_schema_version",
    "missing_keys": "validation",
    "binary_garbage": None,  # invalid_utf8, or invalid_json when the bytes happen to be UTF-8, or empty
    "non_object_json": "not_an_object",
}
PER_CATEGORY = N_BAD // len(CATEGORIES)  # 1,250 each

# Huge strings: most between 1 and 32 KiB, ten of 200 KB, and three of ~900 KB, which the dead letter truncates
# to its first 512 KiB (Kafka's default message limit is ~1 MiB, for the original and for the dead letter).
HUGE_200K, HUGE_900K = 10, 3
HUGE_KEY_EVERY = 25  # one huge-strings payload in 25 also has an 8 KiB key (a dead letter keeps 6 KiB of a key)
MAX_KEY_BYTES = MAX_TEXT_LENGTH * 3


@dataclass(frozen=True)
class Bad:
    category: str
    role: str  # "predictions" or "labels": the input topic it goes to
    key: bytes | None
    value: bytes | None
    reason: str

    def stored(self) -> bytes:
        """What the dead letter must carry: the value's bytes, at most its first 512 KiB."""
        return (self.value or b"")[:MAX_DEAD_LETTER_PAYLOAD_BYTES]


# -- the generator ----------------------------------------------------------------------------------------------


def _dumps(data: Any) -> bytes:
    # allow_nan (the default) writes float('nan') as NaN and infinities as Infinity: the non-JSON literals that
    # producers in Python and JavaScript emit. ensure_ascii=False keeps multi-byte text as UTF-8, not \u escapes.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _timestamp(rng: random.Random) -> str:
    return (START + timedelta(seconds=rng.randrange(3_000))).isoformat().replace("+00:00", "Z")


def _template(rng: random.Random, role: str, n: int) -> dict[str, Any]:
    """A valid event for the role's topic (ids of its own: should it be accepted, it would join nothing)."""
    common = {"schema_version": 1, "prediction_id": f"bad-{n}", "model_id": rng.choice(MODELS)}
    if role == "predictions":
        features = {f"x{i}": round(rng.uniform(0, 10), 6) for i in range(3)}
        prediction = {"model_version": 1, "features": features, "prediction": rng.randrange(2)}
        return {**common, **prediction, "timestamp": _timestamp(rng)}
    return {**common, "label": rng.randrange(2), "timestamp": _timestamp(rng)}


def _invalid_json(rng: random.Random, role: str, n: int) -> bytes:
    text = _dumps(_template(rng, role, n)).decode()
    variant = rng.randrange(14)
    if variant == 0:
        out = text[: rng.randrange(1, len(text))]  # truncated: a proper prefix of an object never parses
    elif variant == 1:
        out = text[:-1] + ",}"  # trailing comma
    elif variant == 2:
        out = text.replace('"', "'")  # single quotes
    elif variant == 3:
        out = re.sub(r'"(\w+)":', r"\1:", text)  # unquoted keys
    elif variant == 4:
        out = text + rng.choice(["}", "x", "{}", ",", "\x00", "]", text])  # trailing characters
    elif variant == 5:
        out = text.replace('":', '" ', 1)  # a missing colon
    elif variant == 6:
        out = "/* a comment */" + text if rng.random() < 0.5 else text[:-1] + "//c\n}"
    elif variant == 7:
        out = "\ufeff" + text  # a UTF-8 byte order mark
    elif variant == 8:
        out = repr(json.loads(text))  # a Python dict's repr
    elif variant == 9:
        out = re.sub(r"(?<=:)\d+(\.\d+)?(?=[,}])", rng.choice(["nan", "inf", "-inf", "NAN", "+1", "01", ".5"]), text)
    elif variant == 10:
        out = text.replace(f'"bad-{n}"', rng.choice(['"\\ud800"', '"\\x41"', '"\\u12"', '"tab\tinside"', '"open']))
    elif variant == 11:
        out = rng.choice([" ", "\n", "\t\r\n ", "  \n  "])  # whitespace only
    elif variant == 12:
        alphabet = "abcdefghijklmnopqrstuvwxyz{}[]:,\"' 0123456789"
        out = rng.choice("xyzQ<") + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
    else:
        out = text.replace(":", "=", 1 + rng.randrange(3))  # key=value
    return out.encode()


_WRONG_TYPES: dict[str, list[Any]] = {
    "prediction_id": [7, None, True, [], {}, 1.5, ["bad"]],
    "model_id": [5, None, [], {"id": "fuzz-a"}, False],
    "timestamp": [12_345, 1.5, None, True, [], {}, [2026, 11, 28]],
    "model_version": ["1", 1.5, 1.0, True, None, [1], {}],
    "features": [[1, 2], "x0=1", None, 3, {"x0": "1.5"}, {"x0": True}, {"x0": None}, {"x0": [1]}, {"x0": {}}],
    "prediction": [None, [1], {"class": 1}],
    "label": [None, [1], {"class": 1}],
}


def _wrong_types(rng: random.Random, role: str, n: int) -> bytes:
    event = _template(rng, role, n)
    field = rng.choice([name for name in _WRONG_TYPES if name in event])
    event[field] = rng.choice(_WRONG_TYPES[field])
    return _dumps(event)


def _nan_infinity(rng: random.Random, role: str, n: int) -> bytes:
    event = _template(rng, role, n)
    if role == "predictions":
        where = rng.choice(["x0", "x1", "x2", "prediction"])
        if where == "prediction":
            event["prediction"] = "@VALUE@"
        else:
            event["features"][where] = "@VALUE@"
    else:
        event["label"] = "@VALUE@"
    value = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999"])
    return _dumps(event).replace(b'"@VALUE@"', value.encode())


_HUGE_ALPHABETS = ("a", "0123456789", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "é", "中文", "😀")


def _huge_string(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of UTF-8: a random 64-character chunk, repeated."""
    alphabet = rng.choice(_HUGE_ALPHABETS)
    chunk = "".join(rng.choice(alphabet) for _ in range(64))
    chars = max(1, size // len(chunk[0].encode()))
    return (chunk * (chars // 64 + 1))[:chars]


def _huge_strings(rng: random.Random, role: str, n: int, size: int) -> bytes:
    event = _template(rng, role, n)
    huge = _huge_string(rng, size)
    where = rng.choice(
        ["prediction_id", "model_id", "timestamp", "extra_field"]
        + (["feature_name", "feature_value", "prediction"] if role == "predictions" else ["label"])
    )
    if where == "extra_field":
        event["note"] = huge
    elif where == "feature_name":
        event["features"][huge] = 1.0
    elif where == "feature_value":
        event["features"]["x0"] = huge
    else:
        event[where] = huge
    return _dumps(event)


_VERSIONS = [0, 2, 3, 99, -1, 100, 1_000, 2**31 - 1, 2**31, 2**63 - 1, -(2**63)]


def _unknown_schema_version(rng: random.Random, role: str, n: int) -> bytes:
    event = _template(rng, role, n)
    event["schema_version"] = rng.choice(_VERSIONS) if rng.random() < 0.7 else rng.randrange(2, 10**9)
    return _dumps(event)


def _missing_keys(rng: random.Random, role: str, n: int) -> bytes:
    event = _template(rng, role, n)
    for name in rng.sample(sorted(event), rng.randrange(1, len(event) + 1)):
        del event[name]
    return _dumps(event)


def _binary_garbage(rng: random.Random, role: str, n: int) -> bytes | None:
    variant = rng.randrange(20)
    if variant == 0:
        return rng.choice([None, b""])  # a tombstone, or an empty value
    if variant in (1, 2):
        return gzip.compress(_dumps(_template(rng, role, n)), mtime=0)  # compressed JSON
    if variant == 3:
        return _dumps(_template(rng, role, n)).decode().encode(rng.choice(["utf-16", "utf-32"]))
    if variant == 4:
        return '{"model_id":"café","label":"naïve"}'.encode("latin-1")
    if variant == 5:  # Confluent's Avro wire format: magic byte 0, a 4-byte schema id, then the Avro body
        return b"\x00" + rng.randrange(2**31).to_bytes(4, "big") + rng.randbytes(rng.randrange(1, 64))
    if variant == 6:  # control bytes only (valid UTF-8, not JSON)
        return bytes(rng.randrange(32) for _ in range(rng.randrange(1, 64)))
    data = bytearray(rng.randbytes(rng.randrange(1, 4_096)))
    data[rng.randrange(len(data))] = 0xFF  # never part of UTF-8
    return bytes(data)


def _garbage_reason(value: bytes | None) -> str:
    if not value:
        return "empty"
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    return "invalid_json"


def _non_object_json(rng: random.Random, role: str, n: int) -> bytes:
    variant = rng.randrange(8)
    if variant == 0:
        return _dumps([_template(rng, role, n)])  # a batch of events instead of one
    if variant == 1:
        return _dumps(_dumps(_template(rng, role, n)).decode())  # JSON encoded twice: a string
    if variant == 2:
        return str(rng.randrange(-(10**12), 10**12)).encode()
    if variant == 3:
        return repr(rng.uniform(-1e6, 1e6)).encode()
    if variant == 4:
        return rng.choice([b"true", b"false", b"null", b"NaN", b"-Infinity", b" 42 ", b"\n[]\n"])
    if variant == 5:
        return _dumps("".join(rng.choice("abcdef ") for _ in range(rng.randrange(0, 40))))
    if variant == 6:
        return _dumps([[], [[]], {"nested": [1, 2]}])
    return b"[" + b",".join(_dumps(_template(rng, role, n + i)) for i in range(3)) + b"]"


def _key(rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(MODELS).encode()
    if roll < 0.7:
        return None
    if roll < 0.8:
        return b""
    return rng.randbytes(rng.randrange(1, 64))


def generate_bad(seed: int = SEED) -> list[Bad]:
    rng = random.Random(seed)
    kinds = [category for category in CATEGORIES for _ in range(PER_CATEGORY)]
    rng.shuffle(kinds)
    generators: dict[str, Callable[[random.Random, str, int], bytes | None]] = {
        "invalid_json": _invalid_json,
        "wrong_types": _wrong_types,
        "nan_infinity": _nan_infinity,
        "unknown_schema_version": _unknown_schema_version,
        "missing_keys": _missing_keys,
        "binary_garbage": _binary_garbage,
        "non_object_json": _non_object_json,
    }
    bad, huge = [], 0
    for n, category in enumerate(kinds):
        role = rng.choice(["predictions", "labels"])
        key = _key(rng)
        if category == "huge_strings":
            if huge < HUGE_900K:
                size = 900_000
            elif huge < HUGE_900K + HUGE_200K:
                size = 200_000
            else:
                size = int(1024 * 2 ** rng.uniform(0, 5))  # 1 to 32 KiB
            value = _huge_strings(rng, role, n, size)
            if huge % HUGE_KEY_EVERY == 1:
                key = rng.randbytes(8 * 1024)
            huge += 1
        else:
            value = generators[category](rng, role, n)
            if value is None and key is None:
                key = rng.choice(MODELS).encode()  # a tombstone needs a key (Kafka refuses a record with neither)
        reason = CATEGORIES[category] or _garbage_reason(value)
        bad.append(Bad(category, role, key, value, reason))
    return bad


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
        decode(_dumps(_template(rng, role, 0)), event_type)  # the undamaged template is a valid event
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
        assert letter.error_class == "schemas.codec.EventDecodeError"
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
