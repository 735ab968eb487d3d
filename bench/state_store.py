"""Benchmark: the prediction/label join on disk (StoredJoiner over a PartitionStore) against the in-RAM LabelJoiner.

    .venv/bin/python -m bench.state_store [--pending 1000000] [--counts 200000,500000,1000000] [--baseline 200000]

Each scenario runs in a fresh process, in a temporary directory under /tmp deleted at the end. Predictions: model
"churn", 8 numeric features, random 32-hex ids, event times 10 ms apart, decoded by ``schemas.decode`` and added with
``raw=schemas.encode(event)``, staged and written every 1,000 adds (a poll batch), each batch's changelog records
(``changelog_records()``: the entries, not their indexes) kept.
- RAM: resident-set growth (/proc/self/statm) from the opened empty store to ``--pending`` predictions, per
  prediction, against the in-RAM LabelJoiner at ``--baseline``; disk: ``size_on_disk()`` after a flush and compactions.
- reopen: the store checkpointed at each of ``--counts`` is opened in a new process (a restart on the same machine,
  page cache warm), and a label joins a pending prediction: seconds to open, to join the first, µs per next join.
- rebuild: the changelog up to each count, compacted (latest value per key), applied into a fresh store by
  ``PartitionStore.apply()`` in chunks of 10,000 records.
- add+join: µs per ``add_prediction`` and per joining ``add_label`` over ``--ops`` events, StoredJoiner (``write()``
  included) against LabelJoiner on the same events.

Figures, and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rocksdict

from retrain.decisions.join import LabelJoiner, LabelOutcome
from retrain.schemas import LabelEvent, PredictionEvent, decode, encode
from retrain.state.join import INDEX_PREFIXES, StoredJoiner, index_keys
from retrain.state.store import PartitionStore

START = datetime(2026, 11, 28, tzinfo=UTC)
BATCH = 1_000  # adds per write(), as a detector's poll batch
CHUNK = 10_000  # changelog records per apply() in a rebuild
_RNG = random.Random(7)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _id(i: int) -> str:
    """Prediction ``i``'s id: random-looking 32 hex digits (as uuid4().hex), so keys arrive in no order."""
    return hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest()


def _time(i: int) -> str:
    return (START + timedelta(milliseconds=10 * i)).isoformat()


def _features(r: random.Random) -> str:
    """One prediction's features and outcome as JSON text (churn-like: tenure, charges, calls, usage...)."""
    return (
        f'"features":{{"tenure_months":{r.randint(0, 72)},"monthly_charges":{r.uniform(18, 120):.2f},'
        f'"total_charges":{r.uniform(0, 8000):.2f},"support_calls":{r.randint(0, 9)},'
        f'"days_since_login":{r.randint(0, 90)},"plan_tier":{r.randint(1, 4)},'
        f'"discount":{r.random():.3f},"usage_gb":{r.expovariate(0.05):.3f}}},"prediction":{int(r.random() < 0.3)}'
    )


_POOL = [_features(random.Random(seed)) for seed in range(4096)]  # formatting them per event would double the fill


def _prediction(i: int) -> tuple[PredictionEvent, bytes]:
    """Prediction ``i`` decoded from its JSON (as a detector reads it) and its bytes as ``schemas.encode`` writes."""
    payload = (
        f'{{"schema_version":1,"prediction_id":"{_id(i)}","model_id":"churn","model_version":3,'
        f'{_POOL[i * 40503 % len(_POOL)]},"timestamp":"{_time(i)}"}}'
    )
    event = decode(payload.encode(), PredictionEvent)
    return event, encode(event)


def _label(i: int) -> tuple[LabelEvent, bytes]:
    payload = f'{{"schema_version":1,"prediction_id":"{_id(i)}","model_id":"churn","label":1,"timestamp":"{_time(i)}"}}'
    event = decode(payload.encode(), LabelEvent)
    return event, encode(event)


def fill(workdir: Path, pending: int, counts: list[int]) -> dict[str, Any]:
    """StoredJoiner filled to the largest count; RSS growth, checkpoints and changelog byte offsets at each count."""
    total = max(pending, *counts)
    stops = {pending, *counts}
    store = PartitionStore(workdir / "live", index_keys, INDEX_PREFIXES)
    joiner = StoredJoiner(store)
    out: dict[str, Any] = {"rss": {}, "changelog": {}}
    gc.collect()
    before = rss_bytes()
    position = 0  # the changelog's end offset: one record per change
    started = time.perf_counter()
    with open(workdir / "changelog.pickle", "wb") as changelog:
        for i in range(total):
            event, raw = _prediction(i)
            joiner.add_prediction(event, i, raw=raw)
            if (i + 1) % BATCH == 0 or i + 1 in stops:
                changes = store.changelog_records()
                pickle.dump(changes, changelog, pickle.HIGHEST_PROTOCOL)
                position += len(changes)
                store.write(position)
            if i + 1 in stops:
                gc.collect()
                out["rss"][i + 1] = rss_bytes() - before
                changelog.flush()
                out["changelog"][i + 1] = changelog.tell()
                if i + 1 in counts:
                    rocksdict.Checkpoint(store._db).create_checkpoint(str(workdir / f"at-{i + 1}"))
    out["fill_us"], out["total"] = (time.perf_counter() - started) / total * 1e6, total
    assert joiner.pending_predictions == total
    store._db.flush()
    while store._db.property_int_value("rocksdb.compaction-pending") or store._db.property_int_value(
        "rocksdb.num-running-compactions"
    ):
        time.sleep(0.1)  # files a running compaction replaces would be counted twice
    out["disk"] = store.size_on_disk()
    store.close()
    return out


def baseline(count: int) -> float:
    """RSS growth per pending prediction of the in-RAM LabelJoiner."""
    joiner = LabelJoiner(max_pending=count + 1)
    gc.collect()
    before = rss_bytes()
    for i in range(count):
        joiner.add_prediction(_prediction(i)[0], i)
    gc.collect()
    assert joiner.pending_predictions == count
    return (rss_bytes() - before) / count


def reopen(path: Path, count: int) -> dict[str, float]:
    """Seconds to open a closed store of ``count`` predictions and to join the first label, then µs per next join."""
    first, first_raw = _label(count // 2)
    more = [_label(j) for j in _RNG.sample(range(count), min(1_000, count)) if j != count // 2]
    started = time.perf_counter()
    joiner = StoredJoiner(PartitionStore(path, index_keys, INDEX_PREFIXES))
    opened = time.perf_counter()
    outcome, _ = joiner.add_label(first, 0, raw=first_raw)
    joined = time.perf_counter()
    assert outcome is LabelOutcome.JOINED, outcome
    for label, raw in more:
        assert joiner.add_label(label, 1, raw=raw)[0] is LabelOutcome.JOINED
    more_us = (time.perf_counter() - joined) / max(len(more), 1) * 1e6
    joiner.store.close()
    return {"open": opened - started, "join": joined - opened, "more_us": more_us}


def rebuild(workdir: Path, end: int, count: int) -> dict[str, float]:
    """The changelog up to byte ``end``, compacted, applied into a fresh store in chunks of CHUNK records."""
    latest: dict[bytes, bytes | None] = {}
    with open(workdir / "changelog.pickle", "rb") as changelog:
        while changelog.tell() < end:
            latest.update(pickle.load(changelog))
    records = list(latest.items())
    del latest
    store = PartitionStore(workdir / f"rebuilt-{count}", index_keys, INDEX_PREFIXES)
    started = time.perf_counter()
    for start in range(0, len(records), CHUNK):
        store.apply(records[start : start + CHUNK], start + CHUNK)
    seconds = time.perf_counter() - started
    assert StoredJoiner(store).pending_predictions == count
    store.destroy()
    return {"seconds": seconds, "records": len(records)}


def ops(workdir: Path, count: int) -> dict[str, float]:
    """µs per add_prediction and per joining add_label, StoredJoiner (writes included) and LabelJoiner."""
    sides = {"add": [_prediction(i) for i in range(count)], "join": [_label(i) for i in range(count)]}
    gc.freeze()  # the prepared events are input, not what a joiner holds: no collection is to walk them
    store = PartitionStore(workdir / "ops", index_keys, INDEX_PREFIXES)
    stored, in_ram = StoredJoiner(store), LabelJoiner(max_pending=count + 1)
    out: dict[str, float] = {"write": 0.0}
    for name, events in sides.items():
        add: Any = stored.add_prediction if name == "add" else stored.add_label
        started = time.perf_counter()
        for i, (event, raw) in enumerate(events, 1):
            add(event, i, raw=raw)
            if i % BATCH == 0:
                written = time.perf_counter()
                store.write(i)
                out["write"] += time.perf_counter() - written
        out[f"stored_{name}"] = (time.perf_counter() - started) / count * 1e6
        add = in_ram.add_prediction if name == "add" else in_ram.add_label
        started = time.perf_counter()
        for i, (event, _) in enumerate(events, 1):
            add(event, i)
        out[f"ram_{name}"] = (time.perf_counter() - started) / count * 1e6
    assert stored.stats.joined == in_ram.stats.joined == count
    out["write"] *= 1e6 / (2 * count)
    store.destroy()
    return out


def _child(*args: str) -> Any:
    """The JSON printed by this module run with ``args`` in a fresh interpreter."""
    command = [sys.executable, "-m", "bench.state_store", *args]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending predictions of the RAM figure")
    parser.add_argument("--counts", default="200000,500000,1000000", help="counts of the reopen and rebuild runs")
    parser.add_argument("--baseline", type=int, default=200_000, help="pending predictions in the in-RAM LabelJoiner")
    parser.add_argument("--ops", type=int, default=100_000, help="predictions and labels of the add+join timing")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # one scenario in this process
    args = parser.parse_args()
    counts = sorted(int(count) for count in args.counts.split(","))
    if args.child:
        scenario, workdir, *rest = args.child
        handlers = {
            "fill": lambda: fill(Path(workdir), args.pending, counts),
            "baseline": lambda: baseline(args.baseline),
            "reopen": lambda: reopen(Path(workdir) / f"at-{rest[0]}", int(rest[0])),
            "rebuild": lambda: rebuild(Path(workdir), int(rest[1]), int(rest[0])),
            "ops": lambda: ops(Path(workdir), args.ops),
        }
        print(json.dumps(handlers[scenario]()))
        return
    workdir = tempfile.mkdtemp(prefix="bench-state-", dir="/tmp")
    common = ["--pending", str(args.pending), "--counts", args.counts, "--baseline", str(args.baseline)]
    try:
        filled = _child(*common, "--child", "fill", workdir)
        total, rss = filled["total"], sorted((int(count), growth) for count, growth in filled["rss"].items())
        held, in_ram = dict(rss)[args.pending], _child(*common, "--child", "baseline", workdir)
        print(
            f"RAM, StoredJoiner with {args.pending} pending predictions (written every {BATCH}): RSS growth "
            f"{held / 2**20:.0f} MiB, {held / args.pending:.0f} bytes per prediction; LabelJoiner at {args.baseline}: "
            f"{in_ram:.0f} bytes per prediction; ratio {held / args.pending / in_ram:.3f}"
        )
        (low, low_rss), (high, high_rss) = rss[-2] if len(rss) > 1 else (0, 0), rss[-1]
        print(
            "  RSS growth by count: "
            + ", ".join(f"{count}: {growth / 2**20:.0f} MiB" for count, growth in rss)
            + f"; {(high_rss - low_rss) / (high - low):.0f} bytes per prediction from {low} to {high}"
        )
        print(
            f"disk at {total}: {filled['disk'] / total:.0f} bytes per pending prediction after a flush and compactions "
            f"({filled['disk'] / 2**20:.0f} MiB); fill {filled['fill_us']:.1f} µs per prediction (event decoding and "
            "changelog included)"
        )
        for count in counts:
            opened = _child(*common, "--child", "reopen", workdir, str(count))
            rebuilt = _child(*common, "--child", "rebuild", workdir, str(count), str(filled["changelog"][str(count)]))
            print(
                f"at {count}: reopen {opened['open']:.3f} s, first join {opened['join'] * 1000:.2f} ms, then "
                f"{opened['more_us']:.0f} µs per join (1,000 at random); rebuild {rebuilt['records']} changelog "
                f"records in {rebuilt['seconds']:.1f} s, {rebuilt['records'] / rebuilt['seconds']:,.0f} records/s"
            )
        timed = _child(*common, "--ops", str(args.ops), "--child", "ops", workdir)
        print(
            f"add+join of {args.ops} predictions and their labels: StoredJoiner {timed['stored_add']:.1f} µs per "
            f"add_prediction, {timed['stored_join']:.1f} µs per joining add_label ({timed['write']:.1f} µs of each in "
            f"write()); LabelJoiner {timed['ram_add']:.1f} and {timed['ram_join']:.1f} µs; ratio "
            f"{timed['stored_add'] / timed['ram_add']:.1f}x and {timed['stored_join'] / timed['ram_join']:.1f}x"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
