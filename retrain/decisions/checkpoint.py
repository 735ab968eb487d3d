"""Detector state snapshots: what a restarted or rebalanced detector cannot cheaply rebuild from Kafka. Pure Python.

A :class:`Snapshot` is taken for one partition of the co-partitioned streams when its offsets are committed: the
:class:`ModelWatch` of every model in that partition (drift detectors, rolling metric, change history, episode,
cooldown) and the ids of the joins whose records will be read again after a crash (those with a side not
behind the committed offsets). Restored, the watches carry on where they were, and the joins read again are
known as done: they are neither emitted nor observed a second time. Pending joins need no snapshot: their
records are never committed, so they are read again.

The watches are pickled (River's detectors have no other serialisation), so a snapshot is only ever unpickled
after two checks, in this order: its HMAC-SHA256 (a key only the detectors hold: whoever can write the topic
cannot make the detector run their pickle), then the River version it was written with (River changes its
pickle format between versions; a snapshot of another version is refused with a clear message, and the
partition starts afresh).

Layout: ``MAGIC | hmac(32 bytes, over the rest) | header length (4 bytes, big-endian) | header (JSON) |
zlib(pickle(state))``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any

from retrain.decisions.policy import ModelWatch

MAGIC = b"RTSNAP1\n"
FORMAT = 1
_DIGEST = 32


class SnapshotRefused(ValueError):
    """A snapshot that must not be used; ``reason`` is a short code for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Snapshot:
    partition: int
    watches: dict[str, ModelWatch] = field(default_factory=dict)
    # (model_id, prediction_id) of joins that will be read again; plain prediction ids in older snapshots.
    joined: list[tuple[str, str]] | list[str] = field(default_factory=list)


def snapshot_key(secret: bytes) -> bytes:
    """The snapshots' own key, derived from a longer-lived secret (so it signs nothing else)."""
    return hmac.new(secret, b"retrain detector state snapshots", hashlib.sha256).digest()


def encode_snapshot(snapshot: Snapshot, key: bytes, river_version: str) -> bytes:
    header = json.dumps(
        {
            "format": FORMAT,
            "river": river_version,
            "partition": snapshot.partition,
            "models": sorted(snapshot.watches),
            "joined": len(snapshot.joined),
        }
    ).encode()
    body = zlib.compress(pickle.dumps({"watches": snapshot.watches, "joined": snapshot.joined}, protocol=5))
    signed = len(header).to_bytes(4, "big") + header + body
    return MAGIC + hmac.new(key, signed, hashlib.sha256).digest() + signed


def read_header(data: bytes, key: bytes) -> tuple[dict[str, Any], bytes]:
    """The verified header and the still-pickled body; raises :class:`SnapshotRefused`."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _DIGEST + 4:
        raise SnapshotRefused("not_a_snapshot", "the record is not a detector state snapshot")
    digest, signed = data[len(MAGIC) : len(MAGIC) + _DIGEST], data[len(MAGIC) + _DIGEST :]
    if not hmac.compare_digest(digest, hmac.new(key, signed, hashlib.sha256).digest()):
        raise SnapshotRefused(
            "bad_signature",
            "the snapshot's signature does not match: it was altered, or written with another key "
            "(RETRAIN_REGISTRY_HMAC_KEY); it was not unpickled",
        )
    length = int.from_bytes(signed[:4], "big")
    try:
        header = json.loads(signed[4 : 4 + length])
    except ValueError as error:
        raise SnapshotRefused("not_a_snapshot", f"the snapshot's header is not JSON: {error}") from error
    return header, signed[4 + length :]


def decode_snapshot(data: bytes, key: bytes, river_version: str) -> Snapshot:
    header, body = read_header(data, key)
    if header.get("format") != FORMAT:
        raise SnapshotRefused("format", f"snapshot format {header.get('format')!r}, this detector reads {FORMAT}")
    if header.get("river") != river_version:
        raise SnapshotRefused(
            "river_version",
            f"the snapshot of partition {header.get('partition')} was written with River {header.get('river')} and "
            f"this detector runs River {river_version}; River's pickles do not carry across versions, so the "
            "partition's detector state starts afresh (its joins are still complete: they are read again)",
        )
    state = unpickle_state(zlib.decompress(body))  # signed by a detector and of this River version
    return Snapshot(int(header["partition"]), dict(state["watches"]), list(state["joined"]))


# Packages that were installed at the top level before they moved under retrain.
_MOVED_PACKAGES = ("schemas", "consumers", "producers")


class _StateUnpickler(pickle.Unpickler):
    """Finds the classes of snapshots written when the event models were the top-level package ``schemas``."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".", 1)[0] in _MOVED_PACKAGES:
            module = f"retrain.{module}"
        return super().find_class(module, name)


def unpickle_state(data: bytes) -> Any:
    """A verified snapshot's pickled state; classes of the packages now under ``retrain.`` are found there."""
    return _StateUnpickler(io.BytesIO(data)).load()
