"""The fuzz corpus: 10,000 damaged payloads, from a fixed seed, each with the dead-letter reason it calls for.

Used by the broker fuzz test (``test_fuzz.py``) and by the fast codec's equivalence test.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from retrain.producers.scored import START
from retrain.schemas.events import MAX_DEAD_LETTER_PAYLOAD_BYTES
from retrain.schemas.types import MAX_TEXT_LENGTH

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


def dumps(data: Any) -> bytes:
    # allow_nan (the default) writes float('nan') as NaN and infinities as Infinity: the non-JSON literals that
    # producers in Python and JavaScript emit. ensure_ascii=False keeps multi-byte text as UTF-8, not \u escapes.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _timestamp(rng: random.Random) -> str:
    return (START + timedelta(seconds=rng.randrange(3_000))).isoformat().replace("+00:00", "Z")


def template(rng: random.Random, role: str, n: int) -> dict[str, Any]:
    """A valid event for the role's topic (ids of its own: should it be accepted, it would join nothing)."""
    common = {"schema_version": 1, "prediction_id": f"bad-{n}", "model_id": rng.choice(MODELS)}
    if role == "predictions":
        features = {f"x{i}": round(rng.uniform(0, 10), 6) for i in range(3)}
        prediction = {"model_version": 1, "features": features, "prediction": rng.randrange(2)}
        return {**common, **prediction, "timestamp": _timestamp(rng)}
    return {**common, "label": rng.randrange(2), "timestamp": _timestamp(rng)}


def _invalid_json(rng: random.Random, role: str, n: int) -> bytes:
    text = dumps(template(rng, role, n)).decode()
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
    # Nine values: the seeded corpus (and the counts test_fuzz expects) depends on how many there are.
    "features": [
        [1, 2],
        "x0=1",
        None,
        3,
        {"x0": [1]},
        {"x0": {}},
        {"x0": ["UA"]},
        {"x0": {"v": None}},
        {"x0": "c" * 257},
    ],
    "prediction": [None, [1], {"class": 1}],
    "label": [None, [1], {"class": 1}],
}


def _wrong_types(rng: random.Random, role: str, n: int) -> bytes:
    event = template(rng, role, n)
    field = rng.choice([name for name in _WRONG_TYPES if name in event])
    event[field] = rng.choice(_WRONG_TYPES[field])
    return dumps(event)


def _nan_infinity(rng: random.Random, role: str, n: int) -> bytes:
    event = template(rng, role, n)
    if role == "predictions":
        where = rng.choice(["x0", "x1", "x2", "prediction"])
        if where == "prediction":
            event["prediction"] = "@VALUE@"
        else:
            event["features"][where] = "@VALUE@"
    else:
        event["label"] = "@VALUE@"
    value = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999"])
    return dumps(event).replace(b'"@VALUE@"', value.encode())


_HUGE_ALPHABETS = ("a", "0123456789", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "é", "中文", "😀")


def _huge_string(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of UTF-8: a random 64-character chunk, repeated."""
    alphabet = rng.choice(_HUGE_ALPHABETS)
    chunk = "".join(rng.choice(alphabet) for _ in range(64))
    chars = max(1, size // len(chunk[0].encode()))
    return (chunk * (chars // 64 + 1))[:chars]


def _huge_strings(rng: random.Random, role: str, n: int, size: int) -> bytes:
    event = template(rng, role, n)
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
    return dumps(event)


_VERSIONS = [0, 2, 3, 99, -1, 100, 1_000, 2**31 - 1, 2**31, 2**63 - 1, -(2**63)]


def _unknown_schema_version(rng: random.Random, role: str, n: int) -> bytes:
    event = template(rng, role, n)
    event["schema_version"] = rng.choice(_VERSIONS) if rng.random() < 0.7 else rng.randrange(2, 10**9)
    return dumps(event)


def _missing_keys(rng: random.Random, role: str, n: int) -> bytes:
    event = template(rng, role, n)
    for name in rng.sample(sorted(event), rng.randrange(1, len(event) + 1)):
        del event[name]
    return dumps(event)


def _binary_garbage(rng: random.Random, role: str, n: int) -> bytes | None:
    variant = rng.randrange(20)
    if variant == 0:
        return rng.choice([None, b""])  # a tombstone, or an empty value
    if variant in (1, 2):
        return gzip.compress(dumps(template(rng, role, n)), mtime=0)  # compressed JSON
    if variant == 3:
        return dumps(template(rng, role, n)).decode().encode(rng.choice(["utf-16", "utf-32"]))
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
        return dumps([template(rng, role, n)])  # a batch of events instead of one
    if variant == 1:
        return dumps(dumps(template(rng, role, n)).decode())  # JSON encoded twice: a string
    if variant == 2:
        return str(rng.randrange(-(10**12), 10**12)).encode()
    if variant == 3:
        return repr(rng.uniform(-1e6, 1e6)).encode()
    if variant == 4:
        return rng.choice([b"true", b"false", b"null", b"NaN", b"-Infinity", b" 42 ", b"\n[]\n"])
    if variant == 5:
        return dumps("".join(rng.choice("abcdef ") for _ in range(rng.randrange(0, 40))))
    if variant == 6:
        return dumps([[], [[]], {"nested": [1, 2]}])
    return b"[" + b",".join(dumps(template(rng, role, n + i)) for i in range(3)) + b"]"


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
