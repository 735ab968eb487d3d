"""A partition's state on local disk (RocksDB through ``rocksdict``), written in batches with the offsets it covers.

No Kafka here. A service stages a poll batch's changes, takes them out as changelog records (key, value or ``None``
for a delete), produces them, and then writes the batch locally together with the changelog position it reached.
Reads see the staged changes; :meth:`PartitionStore.rollback` drops them (a batch given up is read again).

Everything a restore needs travels in the changelog, the input offsets included (in the metadata record), except
what is derived: index keys (``derive`` names them for a record, ``local_prefixes`` says which keys they are) are
rebuilt from the records they index, and the changelog position says how much of the changelog this copy holds.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import rocksdict

log = logging.getLogger(__name__)

META_KEY = b"\x00meta"  # the state's metadata (JSON): counters, watermarks, input offsets; in the changelog
_POSITION_KEY = b"\x00\x00changelog-position"  # local only: the changelog offset this copy holds up to
_FORMAT_KEY = b"\x00\x00format"
FORMAT = b"2"
_UNSTAGED = object()


def _after(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


class StoreUnusable(RuntimeError):
    """The local store cannot be opened or written (corrupt files, an unwritable directory, a full disk)."""


class StoreLocked(StoreUnusable):
    """Another process holds the store open (it may still be releasing it after a rebalance)."""


def _options(cache: rocksdict.Cache) -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_max_open_files(64)
    # Bounded RAM whatever the count held: one 8 MiB memtable (two at most) and a block cache shared per process.
    options.set_write_buffer_size(8 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    # Random ids overlap every file: a smaller first level keeps each compaction into it small (a fill of 1,000,000
    # pending measured 58 -> 30 us per record, bench.state_store).
    options.set_max_bytes_for_level_base(64 * 1024 * 1024)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_compression_type(rocksdict.DBCompressionType.lz4())
    return options


_CACHE: rocksdict.Cache | None = None


def _shared_cache() -> rocksdict.Cache:
    global _CACHE
    if _CACHE is None:
        _CACHE = rocksdict.Cache(32 * 1024 * 1024)
    return _CACHE


class PartitionStore:
    """One partition's key-value state: staged changes over a RocksDB database under ``path``."""

    def __init__(
        self,
        path: Path,
        derive: Callable[[bytes, bytes], list[bytes]] | None = None,
        local_prefixes: tuple[bytes, ...] = (),
    ) -> None:
        self.path = path
        self.derive = derive  # the index keys (values empty) a record brings with it
        self.local_prefixes = (b"\x00\x00", *local_prefixes)  # keys that never go to the changelog
        self.rebuilt_reason: str | None = None  # why the local files were thrown away on open, if they were
        self._db = self._open()
        self._staged: dict[bytes, bytes | bytearray | None] = {}  # every change of the batch (None: a delete)
        self._logged: dict[bytes, bytes | bytearray | None] = {}  # the changes that go to the changelog
        self._growing: dict[bytes, bytearray] = {}  # records of this batch still being appended to
        self._absent: set[bytes] = set()  # staged keys the written store does not hold: a delete just unstages them
        self.meta: dict[str, Any] = self._read_meta()

    # -- opening ------------------------------------------------------------------------------------------

    def _open(self) -> rocksdict.Rdict:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnusable(f"state directory {self.path.parent} cannot be created: {error}") from error
        try:
            db = rocksdict.Rdict(str(self.path), _options(_shared_cache()))
        except Exception as error:  # rocksdict raises plain exceptions for corrupt or foreign files
            if "lock" in str(error).lower():
                raise StoreLocked(
                    f"state store {self.path} is in use by another process (two instances sharing "
                    f"RETRAIN_STATE_DIR?): {error}"
                ) from error
            if not self.path.exists() or not any(self.path.iterdir()):
                raise StoreUnusable(f"state store {self.path} cannot be opened: {error}") from error
            self.rebuilt_reason = f"unreadable ({error})"
            return self._fresh()
        stored = db.get(_FORMAT_KEY)
        if stored is None and db.get(META_KEY) is None:
            db[_FORMAT_KEY] = FORMAT
        elif stored != FORMAT:
            db.close()
            self.rebuilt_reason = f"format {stored!r}, this version writes {FORMAT!r}"
            return self._fresh()
        return db

    def _fresh(self) -> rocksdict.Rdict:
        log.warning("state store %s is rebuilt from its changelog: %s", self.path, self.rebuilt_reason)
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            db = rocksdict.Rdict(str(self.path), _options(_shared_cache()))
        except Exception as error:
            raise StoreUnusable(f"state store {self.path} cannot be created: {error}") from error
        db[_FORMAT_KEY] = FORMAT
        return db

    def _read_meta(self) -> dict[str, Any]:
        raw = self._db.get(META_KEY)
        return json.loads(raw) if raw is not None else {}

    # -- reads (staged changes first) ---------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        staged = self._staged.get(key, _UNSTAGED)
        if staged is _UNSTAGED:
            return self._db.get(key)
        return bytes(staged) if staged.__class__ is bytearray else staged  # type: ignore[return-value,arg-type]

    def is_staged(self, key: bytes) -> bool:
        return key in self._staged

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, below: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Stored (written, not staged) keys under ``prefix`` in key order, from ``start`` (included) up to
        ``below`` (excluded); keys deleted by staged changes are skipped. What was staged in this batch shows up
        once written."""
        options = rocksdict.ReadOptions()
        # The bound lets RocksDB stop at it rather than step over the deletes beyond it to the next live key.
        upper = below if below is not None else _after(prefix)
        if upper is not None:
            options.set_iterate_upper_bound(upper)
        iterator = self._db.iter(options)
        iterator.seek(prefix if start is None or start < prefix else start)
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(prefix) or (below is not None and key >= below):
                return
            if self._staged.get(key, _UNSTAGED) is not None:
                yield key, iterator.value()
            iterator.next()

    # -- writes -------------------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, local: bool = False, absent: bool = False) -> None:
        """Stage ``key`` = ``value``. ``local``: a derived key, kept out of the changelog. ``absent``: the caller
        found no value for the key (``get()`` is None), so a delete in the same batch leaves no trace at all."""
        staged = self._staged
        if absent and key not in staged:
            self._absent.add(key)
        staged[key] = value
        if not local:
            self._logged[key] = value

    def delete(self, key: bytes, *, local: bool = False) -> None:
        if key in self._absent:  # put in this batch over nothing: neither the store nor the changelog hears of it
            self._absent.discard(key)
            del self._staged[key]
            self._logged.pop(key, None)
            self._growing.pop(key, None)
            return
        self._staged[key] = None
        if not local:
            self._logged[key] = None

    def append(self, key: bytes, data: bytes) -> None:
        """Add ``data`` to the end of a record this batch creates (a new key, staged and logged as it grows)."""
        growing = self._growing.get(key)
        if growing is None:
            if key not in self._staged:
                self._absent.add(key)
            growing = self._growing[key] = bytearray(self._staged.get(key) or b"")
            self._staged[key] = self._logged[key] = growing
        growing += data

    def changelog_records(self) -> list[tuple[bytes, bytes | None]]:
        """The staged batch as changelog records (``None``: a delete), derived keys left out, the metadata last."""
        return self._as_records(self._logged)

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The staged batch (``None``: a delete), the metadata record last."""
        return self._as_records(self._staged)

    def _as_records(self, staged: dict[bytes, bytes | bytearray | None]) -> list[tuple[bytes, bytes | None]]:
        for key, growing in self._growing.items():  # finished: an append after this starts from the bytes
            self._staged[key] = self._logged[key] = bytes(growing)
        self._growing.clear()
        out: list[tuple[bytes, bytes | None]] = list(staged.items())  # type: ignore[arg-type]
        out.append((META_KEY, json.dumps(self.meta, separators=(",", ":")).encode()))
        return out

    def write(
        self, changelog_position: int | None = None, changes: list[tuple[bytes, bytes | None]] | None = None
    ) -> None:
        """The staged batch and the metadata, atomically, with how far the changelog holds them (if it does).

        ``changes``: what :meth:`changes` returned for this batch, if it was taken out already.
        """
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in self.changes() if changes is None else changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if changelog_position is not None:
            batch.put(_POSITION_KEY, str(changelog_position).encode())
        self._write(batch)
        self._unstage()

    def _unstage(self) -> None:
        self._staged.clear()
        self._logged.clear()
        self._absent.clear()
        self._growing.clear()

    def rollback(self) -> None:
        """Forget the staged batch: state is as last written."""
        self._unstage()
        self.meta = self._read_meta()

    @property
    def staged(self) -> int:
        return len(self._staged)

    # -- the changelog side -------------------------------------------------------------------------------

    @property
    def changelog_position(self) -> int:
        """The changelog offset up to which this copy holds the changelog (0: nothing, read it all)."""
        raw = self._db.get(_POSITION_KEY)
        return int(raw) if raw is not None else 0

    def apply(self, records: Iterable[tuple[bytes, bytes | None]], changelog_position: int) -> int:
        """Changelog records read from :attr:`changelog_position` on, written as one batch; returns their count."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        count = 0
        latest: dict[bytes, bytes | None] = {}  # this call's writes, which the database does not show yet
        for key, value in records:
            if key.startswith(self.local_prefixes):
                continue  # local and derived keys never travel; a changelog does not set them
            if self.derive is not None:
                old = latest[key] if key in latest else self._db.get(key)
                if old is not None:
                    for derived in self.derive(key, old):
                        batch.delete(derived)
                if value is not None:
                    for derived in self.derive(key, value):
                        batch.put(derived, b"")
                latest[key] = value
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            count += 1
        batch.put(_POSITION_KEY, str(changelog_position).encode())
        self._write(batch)
        self._unstage()
        self.meta = self._read_meta()
        return count

    def clear(self) -> None:
        """Everything deleted: the store starts over (a rebuild from the changelog follows)."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open()
        self._unstage()
        self.meta = {}

    def _write(self, batch: rocksdict.WriteBatch) -> None:
        try:
            self._db.write(batch)
        except Exception as error:  # a full disk or a read-only directory: nothing of the batch is written
            raise StoreUnusable(f"state store {self.path} cannot be written: {error}") from error

    # -- housekeeping -------------------------------------------------------------------------------------

    def size_on_disk(self) -> int:
        """Bytes of the store's live data files (files a running compaction is about to replace not counted)."""
        return self._db.property_int_value("rocksdb.live-sst-files-size") or 0

    def close(self) -> None:
        self._unstage()
        try:
            self._db.close()
        except Exception as error:  # a store that failed a write refuses to close cleanly: what was written stays
            log.warning("state store %s closed with an error: %s", self.path, error)

    def destroy(self) -> None:
        """Close and delete the local files (a partition that moved away for good, or a rebuild)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
