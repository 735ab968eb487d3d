"""Stream sources: River generators and flights with drift points, and CSV files."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from retrain.producers.streams import CsvSource, Example, GeneratorSource, add_stream_options, stream_from_args


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
    path.write_text("a,y\ninf,1\n")
    with pytest.raises(ValueError, match="no column z"):
        CsvSource(path, "z")
    with pytest.raises(ValueError, match=r"s.csv:2: column 'a'"):
        list(CsvSource(path, "y"))


def test_csv_cells_are_numbers_booleans_strings_or_missing(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text(
        "when,n,flag,city,code,y\n"
        "2026-01-02T03:04:05,1.5,true, Oslo ,1_000,0\n"
        "2026-01-02T03:04:05+01:00,-2,FALSE,,x,1\n"
        "1767225600,  ,True,NaN,nan,1\n"
    )
    rows = list(CsvSource(path, "y", timestamp="when"))
    assert [r.features for r in rows] == [
        {"n": 1.5, "flag": True, "city": "Oslo", "code": "1_000"},
        {"n": -2.0, "flag": False, "city": None, "code": "x"},
        {"n": None, "flag": True, "city": None, "code": None},
    ]
    assert [type(v) for v in rows[1].features.values()] == [float, bool, type(None), str]
    assert [r.target for r in rows] == [0, 1, 1]
    assert [r.timestamp.isoformat() for r in rows] == [
        "2026-01-02T03:04:05+00:00",  # a naive time is UTC
        "2026-01-02T03:04:05+01:00",
        "2026-01-01T00:00:00+00:00",  # epoch seconds
    ]


def test_csv_strings_are_at_most_256_characters(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text(f"a,b,y\n1,{'x' * 256},0\n2,{'x' * 257},1\n")
    source = CsvSource(path, "y")
    with pytest.raises(ValueError, match=r"s.csv:3: column 'b': a string of 257 characters \(at most 256\)"):
        list(source)
    assert next(iter(source)).features == {"a": 1.0, "b": "x" * 256}


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "1e999"])
def test_an_infinite_csv_number_is_an_error_naming_the_line(tmp_path: Path, cell: str):
    path = tmp_path / "s.csv"
    path.write_text(f"a,y\n1,0\n{cell},1\n")
    with pytest.raises(ValueError, match=r"s.csv:3: column 'a': .* is not a finite number"):
        list(CsvSource(path, "y"))


def test_a_short_csv_row_is_an_error_naming_the_line(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text("y,a,b\n0,1,2\n1,1\n")
    with pytest.raises(ValueError, match=r"s.csv:3: column 'b': the row has fewer cells"):
        list(CsvSource(path, "y"))


# flights: categorical, boolean and missing features.

CONCEPT_0_CARRIERS = {"AA", "DL", "UA", "WN", "B6", "AS", "NK", "F9"}


def flights(concepts=(0,), points=(), examples=1_000, seed=7, noise=0.1, width=1) -> list[Example]:
    return list(GeneratorSource("flights", concepts, points, examples, seed=seed, noise=noise, width=width))


def test_flights_is_reproducible_from_its_seed():
    first = flights((0, 1, 2), (300, 600), 900)
    assert first == flights((0, 1, 2), (300, 600), 900)
    assert first != flights((0, 1, 2), (300, 600), 900, seed=8)
    assert first[0] == Example(
        {"carrier": "DL", "origin": "PHX", "weekend": False, "distance": 2110.3, "departure_hour": 19.0}, 0
    )


def test_flights_feature_types_and_missing_distances():
    stream = flights((1,), examples=10_000)
    for example in stream:
        f = example.features
        assert list(f) == ["carrier", "origin", "weekend", "distance", "departure_hour"]
        assert type(f["carrier"]) is str and type(f["origin"]) is str and type(f["weekend"]) is bool
        assert f["distance"] is None or (type(f["distance"]) is float and 150 <= f["distance"] <= 3_000)
        assert type(f["departure_hour"]) is float and f["departure_hour"] in range(24)
        assert example.target in (0, 1)
    missing = sum(e.features["distance"] is None for e in stream) / len(stream)
    assert 0.04 <= missing <= 0.06
    assert len({e.features["origin"] for e in stream}) == 20
    assert 0.2 <= sum(e.features["weekend"] for e in stream) / len(stream) <= 0.36


def test_flights_concept_0_labels_follow_its_rule_and_noise_flips_them():
    def rule(f):
        late_carrier = f["carrier"] in {"NK", "F9", "B6"} and f["departure_hour"] >= 15
        busy_weekday = f["origin"] in {"ORD", "EWR", "SFO", "LGA"} and not f["weekend"]
        return int(late_carrier or busy_weekday or (f["distance"] or 0) >= 2_400)

    assert all(rule(e.features) == e.target for e in flights(noise=0.0, examples=5_000))
    noisy = flights(noise=0.1, examples=10_000)
    flipped = sum(rule(e.features) != e.target for e in noisy) / len(noisy)
    assert 0.09 <= flipped <= 0.11


def test_flights_unseen_carriers_appear_from_concept_1_on():
    for concept in (1, 2):
        carriers = {e.features["carrier"] for e in flights((concept,), examples=2_000)}
        assert carriers == CONCEPT_0_CARRIERS | {"XE", "ZK"}
    assert {e.features["carrier"] for e in flights((0,), examples=10_000)} == CONCEPT_0_CARRIERS


def test_flights_switches_concept_at_the_drift_point():
    # Each segment draws from its own concept's stream (seed + segment index): an abrupt switch at 500 takes
    # positions up to 498 from the first, from 502 on from the second (499-501 are on the sigmoid's edge).
    drifting = flights((0, 1), (500,), 1_000, seed=7)
    before, after = flights((0,), examples=1_000, seed=7), flights((1,), examples=1_000, seed=8)
    origins, used = [], [0, 0]
    for example in drifting:
        segment = 0 if example == before[used[0]] else 1
        assert example == (before, after)[segment][used[segment]]
        origins.append(segment)
        used[segment] += 1
    assert origins[:499] == [0] * 499 and origins[502:] == [1] * 498
    assert not any(e.features["carrier"] in {"XE", "ZK"} for e in drifting[:499])
    assert any(e.features["carrier"] in {"XE", "ZK"} for e in drifting[502:600])


def test_flights_is_chosen_like_the_other_generators():
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    source = stream_from_args(parser.parse_args(["--generator", "flights", "--examples", "900"]))
    assert source == GeneratorSource("flights", (0, 1, 2), (300, 600), 900, seed=42, noise=0.1)
    with pytest.raises(ValueError, match=r"flights concepts must be in 0\.\.2"):
        GeneratorSource("flights", (3,), (), 10)
