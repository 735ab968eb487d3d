"""Stream sources: River generators with drift points, and CSV files."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.streams import CsvSource, GeneratorSource


def test_a_generator_source_is_reproducible_and_switches_concept_at_the_point():
    source = GeneratorSource("stagger", (0, 1), (500,), 1_000, seed=9)
    first, second = list(source), list(source)
    assert first == second and len(first) == 1_000

    # STAGGER concept 0 is "size is small and color is red": check the rule before, and its violation after.
    def rule(e):
        return int(e.features["size"] == 0 and e.features["color"] == 0)

    assert all(rule(e) == e.target for e in first[:499])
    assert any(rule(e) != e.target for e in first[501:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concepts": (0, 1), "drift_points": ()},
        {"concepts": (0, 1), "drift_points": (0,)},
        {"concepts": (0, 1, 2), "drift_points": (10, 5)},
        {"concepts": (9,), "drift_points": ()},
        {"generator": "nope", "concepts": (0,), "drift_points": ()},
    ],
)
def test_generator_source_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        GeneratorSource(**{"generator": "stagger", "examples": 100, **kwargs})


def test_csv_source_reads_features_target_and_timestamps(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text("t,a,b,y\n0,1.5,2,up\n60,0.5,3,down\n")
    source = CsvSource(path, "y", timestamp="t")
    rows = list(source)
    assert source.feature_columns == ("a", "b") and source.examples == 2
    assert [(r.features, r.target, r.timestamp.timestamp()) for r in rows] == [
        ({"a": 1.5, "b": 2.0}, "up", 0.0),
        ({"a": 0.5, "b": 3.0}, "down", 60.0),
    ]


def test_csv_source_names_a_missing_column_and_a_bad_value(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text("a,y\nx,1\n")
    with pytest.raises(ValueError, match="no column z"):
        CsvSource(path, "z")
    with pytest.raises(ValueError, match=r"s.csv:2"):
        list(CsvSource(path, "y"))
