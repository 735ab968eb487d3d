"""Every strategy of ``retrain evaluate`` on every stream docs/evaluation.md reports, with scheduled retraining at
several intervals: writes docs/evaluation-tables.md.

    .venv/bin/python -m bench.evaluation_tables [--out docs/evaluation-tables.md] [--jobs 2] [--elec PATH]

Each stream runs every strategy once per warm-up (``--initial``), with the first of its scheduling intervals, and the
scheduled strategy alone at the others. Elec2 is left out, with a line saying so, when its CSV is absent. The
settings are the ``RETRAIN_*`` defaults (or whatever the environment sets); fits use one thread and the detectors
are seeded, so every figure is the same on every run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ELEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "elec.csv"
Outcomes = dict[tuple[int | None, int], dict[str, dict[str, Any]]]  # (warm-up, interval) -> strategy -> summary


@dataclass(frozen=True)
class Stream:
    title: str
    options: tuple[str, ...]  # retrain evaluate's stream options
    intervals: tuple[int, ...]  # --scheduled-every, the first with every strategy
    initials: tuple[int | None, ...] = (None,)  # several: one column each, and their mean

    def command(self) -> str:
        """The command line the table came from; a CSV by its file name (where it lives is the reader's)."""
        before = ("", *self.options[:-1])
        shown = [Path(o).name if b == "--csv" else o for b, o in zip(before, self.options, strict=True)]
        initial = "" if self.initials == (None,) else " --initial W"
        return f"retrain evaluate {' '.join(shown)} --scheduled-every N{initial}"


def streams(elec: Path) -> list[Stream]:
    abrupt = ("--drift-points", "20000,40000", "--examples", "60000", "--seed", "42")
    short = ("--drift-points", "6000", "--examples", "12000", "--initial", "2000")
    stagger = ("--generator", "stagger", "--concepts", "0,2", *short)
    long, brief = (5000, 2000, 10000), (2000, 1000, 4000)  # scheduling intervals
    return [
        Stream("Agrawal 0 -> 2 -> 4", ("--generator", "agrawal", "--concepts", "0,2,4", *abrupt, "--noise", "0"), long),
        Stream("STAGGER 0 -> 1 -> 2", ("--generator", "stagger", "--concepts", "0,1,2", *abrupt), long),
        Stream("SEA 0 -> 1 -> 2, noise 0.1", ("--generator", "sea", "--concepts", "0,1,2", *abrupt, "--noise", "0.1"),
               long),
        Stream("STAGGER 0 -> 2, labels at once", stagger, brief),
        Stream("STAGGER 0 -> 2, labels 500 examples late", (*stagger, "--label-delay", "fixed:500"), brief),
        Stream("STAGGER 0 -> 2, labels exp(500) late", (*stagger, "--label-delay", "exp:500"), brief),
        Stream("Friedman 0 -> 1 (regression, MAE)", ("--generator", "friedman", "--concepts", "0,1", *short), brief),
        Stream("flights 0 -> 1 -> 2", ("--generator", "flights", "--examples", "20000", "--concepts", "0,1,2"), long),
        Stream("Elec2", ("--csv", str(elec), "--target", "class"), (2000, 1000, 1500, 3000), (1000, 1500, 2000, 3000)),
    ]  # fmt: skip


def plan(stream: Stream) -> list[tuple[int | None, int, tuple[str, ...] | None]]:
    """(warm-up, interval, strategies or None for all): every strategy at the first interval, scheduled alone after."""
    first, *others = stream.intervals
    return [(w, first, None) for w in stream.initials] + [
        (w, n, ("scheduled",)) for w in stream.initials for n in others
    ]


def evaluate(options: Sequence[str], interval: int, initial: int | None, names: Sequence[str] | None) -> dict:
    """One ``retrain evaluate`` run in this process: each strategy's summary, with its score."""
    from retrain import evaluate as offline
    from retrain.cli import build_parser
    from retrain.commands.evaluate import run_strategies
    from retrain.producers.replay import parse_label_delay
    from retrain.producers.streams import stream_from_args
    from retrain.settings import load_settings

    argv = ["evaluate", *options, "--scheduled-every", str(interval)]
    argv += [] if initial is None else ["--initial", str(initial)]
    argv += [] if names is None else ["--strategies", ",".join(names)]
    args = build_parser().parse_args(argv)
    results = run_strategies(args, stream_from_args(args), parse_label_delay(args.label_delay), load_settings())
    report = offline.report(results)
    for name, result in results.items():
        report["strategies"][name]["score"] = result.score
    return report


def _rows(stream: Stream, outcomes: Outcomes) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row name, one summary per warm-up) in evaluate's order, a scheduled row per interval."""
    first = stream.intervals[0]

    def across(name: str, interval: int = first) -> list[dict[str, Any]]:
        return [outcomes[(w, interval)]["strategies"][name] for w in stream.initials]

    rows = []
    for name in outcomes[(stream.initials[0], first)]["strategies"]:
        if name == "scheduled":
            rows += [(f"scheduled every {n:,}", across(name, n)) for n in stream.intervals]
        else:
            rows.append((name, across(name)))
    return rows


def render(stream: Stream, outcomes: Outcomes) -> str:
    """The stream's markdown: a line per strategy, a column per warm-up (with their mean) or detail columns."""
    rows = _rows(stream, outcomes)
    metric = "MAE" if "mae" in rows[0][1][0] else "accuracy"
    lines = [f"### {stream.title}", "", f"`{stream.command()}`", ""]
    if len(stream.initials) > 1:
        warmups = " | ".join(f"`--initial {w:,}`" for w in stream.initials)
        lines += [f"| strategy | {warmups} | mean |", "|---" * (len(stream.initials) + 2) + "|"]
        for name, summaries in rows:
            cells = [f"{s['score']:.4f} ({s['retrains']})" for s in summaries]
            score = sum(s["score"] for s in summaries) / len(summaries)
            retrains = sum(s["retrains"] for s in summaries) / len(summaries)
            lines.append(f"| {name} | {' | '.join(cells)} | {score:.4f} ({retrains:g}) |")
    else:
        lines += [f"| strategy | {metric} | retrains | detection delays | false alarms | missed |", "|---" * 6 + "|"]
        for name, (summary,) in rows:
            delays = ", ".join(f"{d:,}" for d in summary["detection_delays"]) or "-"
            lines.append(
                f"| {name} | {summary['score']:.4f} | {summary['retrains']} | {delays} | {summary['false_alarms']} "
                f"| {summary['missed']} |"
            )
        captured = outcomes[(None, stream.intervals[0])].get("gain")
        if captured is not None and math.isfinite(captured):
            lines += ["", f"gain = (default - static) / (oracle - static) = {captured:.3f}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/evaluation-tables.md"))
    parser.add_argument("--jobs", type=int, default=2, help="evaluations in parallel (one process each)")
    parser.add_argument("--elec", type=Path, default=ELEC, help="Elec2's CSV")
    args = parser.parse_args(argv)
    chosen = [s for s in streams(args.elec) if s.title != "Elec2" or args.elec.exists()]
    started = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            (stream.title, w, n): pool.submit(evaluate, stream.options, n, w, names)
            for stream in reversed(chosen)  # Elec2 first: the longest runs start first
            for w, n, names in plan(stream)
        }
        outcomes = {key: future.result() for key, future in futures.items()}
    sections = [render(s, {(w, n): outcomes[(s.title, w, n)] for w, n, _ in plan(s)}) for s in chosen]
    if not args.elec.exists():
        sections.append(f"### Elec2\n\nLeft out: {args.elec} is absent.")
    minutes = (time.monotonic() - started) / 60
    header = (
        "# Evaluation tables (generated)\n\nWritten by `.venv/bin/python -m bench.evaluation_tables` with the default "
        f"settings ({minutes:.0f} min with {args.jobs} jobs on the machine that wrote it). Each table: every strategy "
        "of `retrain evaluate` on one stream, scheduled retraining at several intervals; `W` and `N` in a command "
        "are the table's warm-ups and intervals. What the strategies are and what the figures say: "
        "[evaluation.md](evaluation.md).\n"
    )
    args.out.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {args.out} in {minutes:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
