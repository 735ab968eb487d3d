"""How a detector snapshot is laid out in the compacted changelog topic, and read back. No Kafka I/O here.

In the changelog a snapshot is one record keyed by its partition number (``"3"``) while it fits in
``max_record_bytes``. A larger one (hundreds of models in a partition: about 3 KB each) is written as chunks keyed
``"3.0"``, ``"3.1"``, ... followed by a manifest under ``"3"`` that gives their number, the total size and the
SHA-256 of the whole. A reader assembles a manifest from the chunks read before it, so chunks of a later snapshot
whose manifest was never written cannot be mixed in; a manifest whose chunks do not add up is refused
(``incomplete``) and the partition starts afresh. Chunk keys a smaller snapshot no longer uses get tombstones.
"""

from __future__ import annotations

import hashlib
import json
import math

from retrain.decisions.checkpoint import SnapshotRefused

CHUNKED = b"RTCHUNKS1\n"  # a manifest: the snapshot is in the chunk records before it

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
