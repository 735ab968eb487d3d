"""bench.evaluation_tables: which runs a stream needs, and the markdown of their figures (no evaluation here)."""

from __future__ import annotations

from pathlib import Path

from bench.evaluation_tables import Stream, plan, render, streams


def summary(score: float, retrains: int, delays: tuple[int, ...] = (), false_alarms: int = 0, missed: int = 0):
    return {
        "accuracy": score,
        "score": score,
        "retrains": retrains,
        "detection_delays": list(delays),
        "false_alarms": false_alarms,
        "missed": missed,
    }


def test_every_strategy_runs_once_per_warm_up_and_scheduled_alone_at_the_other_intervals():
    stream = Stream("s", ("--generator", "sea"), (2000, 1000, 3000), (1000, 1500))
    assert plan(stream) == [
        (1000, 2000, None),
        (1500, 2000, None),
        (1000, 1000, ("scheduled",)),
        (1000, 3000, ("scheduled",)),
        (1500, 1000, ("scheduled",)),
        (1500, 3000, ("scheduled",)),
    ]


def test_elec2_is_reported_over_four_warm_ups_and_four_intervals():
    (elec,) = [s for s in streams(Path("elec.csv")) if s.title == "Elec2"]
    assert elec.initials == (1000, 1500, 2000, 3000)
    assert elec.intervals == (2000, 1000, 1500, 3000)
    assert elec.options == ("--csv", "elec.csv", "--target", "class")


def test_one_warm_up_gives_a_row_per_strategy_with_the_scheduled_rows_after_static():
    stream = Stream("Drifting", ("--generator", "sea"), (5000, 2000))
    outcomes = {
        (None, 5000): {
            "strategies": {
                "static": summary(0.8, 0, missed=2),
                "scheduled": summary(0.85, 11, missed=2),
                "ADWIN": summary(0.87, 3, (1031, 291), 1),
                "default": summary(0.876, 3, (1031, 291)),
                "oracle": summary(0.88, 3, (0, 0)),
            },
            "gain": 0.95,
        },
        (None, 2000): {"strategies": {"scheduled": summary(0.86, 29, missed=2)}},
    }
    assert render(stream, outcomes).splitlines() == [
        "### Drifting",
        "",
        "`retrain evaluate --generator sea --scheduled-every N`",
        "",
        "| strategy | accuracy | retrains | detection delays | false alarms | missed |",
        "|---|---|---|---|---|---|",
        "| static | 0.8000 | 0 | - | 0 | 2 |",
        "| scheduled every 5,000 | 0.8500 | 11 | - | 0 | 2 |",
        "| scheduled every 2,000 | 0.8600 | 29 | - | 0 | 2 |",
        "| ADWIN | 0.8700 | 3 | 1,031, 291 | 1 | 0 |",
        "| default | 0.8760 | 3 | 1,031, 291 | 0 | 0 |",
        "| oracle | 0.8800 | 3 | 0, 0 | 0 | 0 |",
        "",
        "gain = (default - static) / (oracle - static) = 0.950",
    ]


def test_several_warm_ups_give_a_column_each_and_their_mean():
    stream = Stream("Elec2", ("--csv", "/data/elec.csv"), (2000, 1000), (1000, 3000))

    def every(static, scheduled, default):
        return {"strategies": {"static": static, "scheduled": scheduled, "default": default}}

    outcomes = {
        (1000, 2000): every(summary(0.6, 0), summary(0.74, 22), summary(0.73, 15)),
        (3000, 2000): every(summary(0.7, 0), summary(0.75, 21), summary(0.76, 14)),
        (1000, 1000): {"strategies": {"scheduled": summary(0.75, 44)}},
        (3000, 1000): {"strategies": {"scheduled": summary(0.76, 42)}},
    }
    assert render(stream, outcomes).splitlines()[2:] == [
        "`retrain evaluate --csv elec.csv --scheduled-every N --initial W`",
        "",
        "| strategy | `--initial 1,000` | `--initial 3,000` | mean |",
        "|---|---|---|---|",
        "| static | 0.6000 (0) | 0.7000 (0) | 0.6500 (0) |",
        "| scheduled every 2,000 | 0.7400 (22) | 0.7500 (21) | 0.7450 (21.5) |",
        "| scheduled every 1,000 | 0.7500 (44) | 0.7600 (42) | 0.7550 (43) |",
        "| default | 0.7300 (15) | 0.7600 (14) | 0.7450 (14.5) |",
    ]
