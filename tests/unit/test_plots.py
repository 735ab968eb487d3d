import random
import struct
from pathlib import Path

import pytest

from retrain.plots import DPI, FIGSIZE, Timeline, plot_timelines, rolling_accuracy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_rolling_accuracy_hand_computed() -> None:
    assert rolling_accuracy([True, False, True, True], 2) == [1.0, 0.5, 0.5, 1.0]
    assert rolling_accuracy([1, 0, 0, 1, 1], 3) == pytest.approx([1.0, 0.5, 1 / 3, 1 / 3, 2 / 3])


def test_rolling_accuracy_window_larger_than_input_is_cumulative_mean() -> None:
    assert rolling_accuracy([False, True, True, False], 10) == pytest.approx([0.0, 0.5, 2 / 3, 0.5])
    assert rolling_accuracy([], 5) == []


def test_rolling_accuracy_rejects_window_below_one() -> None:
    with pytest.raises(ValueError, match="window"):
        rolling_accuracy([True], 0)


def test_plot_timelines_writes_png_of_figure_size(tmp_path: Path) -> None:
    rng = random.Random(0)
    n = 3000
    static = [rng.random() < (0.9 if i < 1500 else 0.55) for i in range(n)]
    adaptive = [rng.random() < (0.9 if i < 1500 or i > 1800 else 0.6) for i in range(n)]
    timelines = [
        Timeline("static", static),
        Timeline("default", adaptive, detections=[1620], swaps=[1800], retrains=1),
    ]
    out = tmp_path / "nested" / "dir" / "eval.png"
    result = plot_timelines(timelines, out, drift_points=[1500], title="test", window=200)
    assert result == out
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))


def test_plot_timelines_rejects_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one timeline"):
        plot_timelines([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no examples"):
        plot_timelines([Timeline("empty", [])], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_timelines_rejects_marker_outside_stream(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detections"):
        plot_timelines([Timeline("t", [True, False], detections=[5])], tmp_path / "x.png")
