"""Rolling-accuracy timelines as a PNG, shared by ``retrain evaluate`` and ``make demo``.

Pure and headless: no Kafka, no pyplot global state (an explicit :class:`Figure` on the Agg canvas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (12.0, 5.0)
DPI = 110
_MARKER: dict[str, Any] = {"linestyle": "none", "markersize": 8, "markeredgecolor": "black", "markeredgewidth": 0.8}


@dataclass
class Timeline:
    """One strategy's run over a stream, positions being 0-based indices into ``correct``."""

    name: str
    correct: Sequence[bool]
    detections: Sequence[int] = ()
    swaps: Sequence[int] = ()
    retrains: int = 0
    accuracy: float | None = None  # for the legend; default: the mean of `correct`


def rolling_accuracy(correct: Sequence[bool], window: int) -> list[float]:
    """Accuracy over the last ``window`` examples at each position (over what exists at the start)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out: list[float] = []
    hits = 0
    for i, ok in enumerate(correct):
        hits += bool(ok)
        if i >= window:
            hits -= bool(correct[i - window])
        out.append(hits / min(i + 1, window))
    return out


def _positions(timeline: Timeline, positions: Sequence[int], what: str) -> list[int]:
    bad = [p for p in positions if not 0 <= p < len(timeline.correct)]
    if bad:
        raise ValueError(f"timeline {timeline.name!r}: {what} {bad[:5]} outside 0..{len(timeline.correct) - 1}")
    return list(positions)


def plot_timelines(
    timelines: Sequence[Timeline],
    path: Path,
    *,
    drift_points: Sequence[int] = (),
    title: str = "",
    window: int = 1000,
) -> Path:
    """Draw each timeline's rolling accuracy with its detections and swaps; write a PNG to ``path``."""
    if not timelines:
        raise ValueError("plot_timelines needs at least one timeline")
    for t in timelines:
        if not t.correct:
            raise ValueError(f"timeline {t.name!r} has no examples (empty `correct`)")
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lowest = 1.0
    for t in timelines:
        acc = rolling_accuracy(t.correct, window)
        lowest = min(lowest, min(acc))
        overall = t.accuracy if t.accuracy is not None else sum(map(bool, t.correct)) / len(t.correct)
        label = f"{t.name} (acc {overall:.3f}, {t.retrains} retrain{'' if t.retrains == 1 else 's'})"
        (line,) = ax.plot(range(len(acc)), acc, linewidth=1.2, label=label)
        colour = line.get_color()
        marks = (("v", _positions(t, t.detections, "detections")), ("o", _positions(t, t.swaps, "swaps")))
        for marker, positions in marks:
            if positions:
                ax.plot(positions, [acc[p] for p in positions], color=colour, zorder=3, **_MARKER, marker=marker)
    # Grey stand-ins so the legend explains the marker shapes once, whatever the colours.
    if any(t.detections for t in timelines):
        ax.plot([], [], color="grey", **_MARKER, marker="v", label="drift detected")
    if any(t.swaps for t in timelines):
        ax.plot([], [], color="grey", **_MARKER, marker="o", label="new model in service")
    for i, p in enumerate(drift_points):
        ax.axvline(p, color="black", linestyle="--", linewidth=1, label="true drift" if i == 0 else None)
    # Autoscale: floor at a round 0.05 step below the lowest point, never below 0; top just above 1.
    ax.set_ylim(max(0.0, math.floor(lowest * 20) / 20 - 0.05), 1.01)
    ax.set_xlim(0, max(len(t.correct) for t in timelines) - 1 or 1)
    ax.set_xlabel("example position")
    ax.set_ylabel(f"rolling accuracy (window {window})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    fig.clear()
    return path
