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

In the changelog a snapshot is one record keyed by its partition number (``"3"``) while it fits in
``max_record_bytes``. A larger one (hundreds of models in a partition: about 3 KB each) is written as chunks keyed
``"3.0"``, ``"3.1"``, ... followed by a manifest under ``"3"`` that gives their number, the total size and the
SHA-256 of the whole. A reader assembles a manifest from the chunks read before it, so chunks of a later snapshot
whose manifest was never written cannot be mixed in; a manifest whose chunks do not add up is refused
(``incomplete``) and the partition starts afresh. Chunk keys a smaller snapshot no longer uses get tombstones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any

from retrain.decisions.policy import ModelWatch

MAGIC = b"RTSNAP1\n"
CHUNKED = b"RTCHUNKS1\n"  # a manifest: the snapshot is in the chunk records before it
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
    state = pickle.loads(zlib.decompress(body))  # signed by a detector and of this River version
    return Snapshot(int(header["partition"]), dict(state["watches"]), list(state["joined"]))


Record = tuple[bytes, bytes | None]  # (key, value); a None value is a tombstone


def changelog_records(partition: int, data: bytes, max_record_bytes: int, stale_chunks: int = 0) -> list[Record]:
    """The changelog records that make ``data`` the partition's latest snapshot, in the order to write them.

    ``stale_chunks``: how many chunk keys the partition's previous snapshot used (those beyond this one's get
    tombstones, so compaction can drop them).
    """
    if max_record_bytes < 1:
        raise ValueError("max_record_bytes must be >= 1")
    chunks = 0 if len(data) <= max_record_bytes else math.ceil(len(data) / max_record_bytes)
    records: list[Record] = [
        (_chunk_key(partition, i), data[i * max_record_bytes : (i + 1) * max_record_bytes]) for i in range(chunks)
    ]
    records += [(_chunk_key(partition, i), None) for i in range(chunks, stale_chunks)]
    if chunks:
        manifest = {"chunks": chunks, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        records.append((str(partition).encode(), CHUNKED + json.dumps(manifest).encode()))
    else:
        records.append((str(partition).encode(), data))
    return records


def _chunk_key(partition: int, index: int) -> bytes:
    return f"{partition}.{index}".encode()


class ChangelogAssembler:
    """Reads one partition's changelog records in order; :meth:`latest` is its snapshot as last written."""

    def __init__(self, partition: int) -> None:
        self.key = str(partition).encode()
        self._prefix = self.key + b"."
        self._chunks: dict[int, bytes] = {}
        self._latest: bytes | None = None
        self._problem: str | None = None

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key == self.key:
            self._latest, self._problem = value, None
            if value is not None and value.startswith(CHUNKED):
                self._latest, self._problem = self._assemble(value[len(CHUNKED) :])
        elif key is not None and key.startswith(self._prefix):
            try:
                index = int(key[len(self._prefix) :])
            except ValueError:
                return  # not a key this format writes
            if value is None:
                self._chunks.pop(index, None)
            else:
                self._chunks[index] = value

    @property
    def chunk_keys(self) -> int:
        """How many chunk keys may still hold values (what the next write must tombstone beyond its own)."""
        return max(self._chunks, default=-1) + 1

    def latest(self) -> bytes | None:
        """The latest snapshot, None if there is none (or a tombstone); :class:`SnapshotRefused` if incomplete."""
        if self._problem is not None:
            raise SnapshotRefused("incomplete", self._problem)
        return self._latest

    def _assemble(self, manifest_text: bytes) -> tuple[bytes | None, str | None]:
        try:
            manifest = json.loads(manifest_text)
            count, size, digest = int(manifest["chunks"]), int(manifest["size"]), str(manifest["sha256"])
        except (ValueError, KeyError, TypeError) as error:
            return None, f"the snapshot's manifest is unreadable: {error}"
        missing = [i for i in range(count) if i not in self._chunks]
        if missing:
            return None, f"the snapshot's chunks {missing[:5]} of {count} are missing"
        data = b"".join(self._chunks[i] for i in range(count))
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            return None, f"the snapshot's {count} chunks do not add up to what its manifest says ({size} bytes)"
        return data, None
