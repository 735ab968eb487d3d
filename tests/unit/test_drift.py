"""DriftMonitor: River's detectors on a model's error stream, with the polarity that lets each see a rise."""

from __future__ import annotations

import functools
import math
import random
from typing import Any

import pytest
from river import drift
from river.drift import binary

from retrain.decisions.drift import DETECTORS, Detection, DetectorSpec, DriftMonitor, proportion_rise_z, rise_z

# River's classes, named independently of the module under test.
RIVER: dict[str, Any] = {
    "ADWIN": drift.ADWIN,
    "PageHinkley": drift.PageHinkley,
    "KSWIN": drift.KSWIN,
    "DDM": binary.DDM,
    "EDDM": binary.EDDM,
    "HDDM_A": binary.HDDMA,
    "HDDM_W": binary.HDDMW,
    "FHDDM": binary.FHDDM,
}
# River 0.26's FHDDM flags a fall of its input's mean: it is given 1 = correct. All others get 1 = error.
FED_CORRECT = {"FHDDM"}
TWO_SIDED = {"ADWIN", "PageHinkley", "KSWIN"}
BINARY_ONLY = {"DDM", "EDDM", "HDDM_A", "HDDM_W", "FHDDM"}

SEED = 1
# KSWIN runs a Kolmogorov-Smirnov test on every update (~0.5 ms): it gets seeded sampling and shorter streams.
KSWIN_SEED = 1


def params_for(name: str) -> dict[str, Any]:
    """River's defaults, except KSWIN's random sampling, which is seeded so that two runs can be compared."""
    return {"seed": KSWIN_SEED} if name == "KSWIN" else {}


@functools.cache
def errors(seed: int, p_before: float, p_after: float, n_before: int, n_after: int) -> tuple[int, ...]:
    """Bernoulli(p_before) errors, then Bernoulli(p_after) errors, from random.Random(seed)."""
    rng = random.Random(seed)
    return tuple(int(rng.random() < p_before) for _ in range(n_before)) + tuple(
        int(rng.random() < p_after) for _ in range(n_after)
    )


@functools.cache
def monitor_detections(name: str, params: tuple[tuple[str, Any], ...], stream: tuple[int, ...]) -> list[Detection]:
    monitor = DriftMonitor((DetectorSpec.of(name, **dict(params)),))
    return [detection for error in stream for detection in monitor.update(error)]


def river_detections(name: str, params: dict[str, Any], stream: tuple[int, ...], *, feed_correct: bool) -> list[int]:
    detector = RIVER[name](**params)
    found = []
    for index, error in enumerate(stream):
        detector.update(1 - error if feed_correct else error)
        if detector.drift_detected:
            found.append(index)
    return found


def test_every_supported_detector_is_covered_here():
    assert set(DETECTORS) == set(RIVER)
    assert {name for name, kind in DETECTORS.items() if kind.two_sided} == TWO_SIDED
    assert {name for name, kind in DETECTORS.items() if kind.binary_only} == BINARY_ONLY


# -- equivalence with River ---------------------------------------------------------------------------------

EQUIVALENCE_CASES = [(name, params_for(name)) for name in DETECTORS] + [
    ("ADWIN", {"delta": 0.01}),
    ("PageHinkley", {"threshold": 20}),
    ("FHDDM", {"sliding_window_size": 50}),
    ("DDM", {"drift_threshold": 2.5}),
]


@pytest.mark.parametrize(
    ("name", "params"),
    EQUIVALENCE_CASES,
    ids=[f"{name}-{params}" if params else name for name, params in EQUIVALENCE_CASES],
)
def test_monitor_detects_exactly_where_river_does(name, params):
    stream = errors(SEED, 0.1, 0.5, 1_000, 2_000) if name == "KSWIN" else errors(SEED, 0.1, 0.5, 3_000, 3_000)

    expected = river_detections(name, params, stream, feed_correct=name in FED_CORRECT)
    found = monitor_detections(name, tuple(sorted(params.items())), stream)

    assert expected, "the stream must make River detect something, or the comparison says nothing"
    assert [d.index for d in found] == expected
    assert all(d.detector == name for d in found)


# -- polarity -----------------------------------------------------------------------------------------------

N_BEFORE, N_AFTER = 1_000, 2_000
POLARITY_SEEDS = range(10)
POLARITY_CASES = [(name, seed) for name in DETECTORS for seed in ((SEED,) if name == "KSWIN" else POLARITY_SEEDS)]


@pytest.mark.parametrize(("name", "seed"), POLARITY_CASES)
def test_a_rise_of_the_error_rate_is_detected_as_rising(name, seed):
    stream = errors(seed, 0.1, 0.5, N_BEFORE, N_AFTER)

    found = monitor_detections(name, tuple(params_for(name).items()), stream)

    assert any(d.rising and d.index >= N_BEFORE for d in found), [(d.index, d.rising) for d in found]


@pytest.mark.parametrize(("name", "seed"), POLARITY_CASES)
def test_a_fall_of_the_error_rate_is_never_reported_as_rising(name, seed):
    stream = errors(seed, 0.5, 0.1, N_BEFORE, N_AFTER)

    found = monitor_detections(name, tuple(params_for(name).items()), stream)

    after_change = [(d.index, d.rising, round(d.before, 3), round(d.after, 3)) for d in found if d.index >= N_BEFORE]
    assert not any(rising for _, rising, _, _ in after_change), after_change


@pytest.mark.parametrize("name", sorted(TWO_SIDED - {"KSWIN"}))
def test_two_sided_detectors_see_the_fall_as_falling(name):
    stream = errors(SEED, 0.5, 0.1, N_BEFORE, N_AFTER)

    found = [d for d in monitor_detections(name, (), stream) if d.index >= N_BEFORE]

    assert found, "ADWIN and Page-Hinkley react to a fall of their input's mean"
    assert all(not d.rising and d.after < d.before for d in found)


@pytest.mark.parametrize("seed", POLARITY_SEEDS)
def test_fhddm_fed_one_for_error_misses_the_rise(seed):
    """The trap: River's FHDDM flags a *fall* of its input. Fed 1 = error it does not react to a rise; fed
    1 = correct it does, within about one window (100). Later detections of the 1 = error feed, if any, come
    from the noise of a 0.5 stream hundreds of examples on, not from the rise."""
    stream = errors(seed, 0.1, 0.5, N_BEFORE, N_AFTER)
    soon_after = range(N_BEFORE, N_BEFORE + 300)

    fed_error = river_detections("FHDDM", {}, stream, feed_correct=False)
    fed_correct = river_detections("FHDDM", {}, stream, feed_correct=True)

    assert not any(i in soon_after for i in fed_error), fed_error
    assert any(i in range(N_BEFORE, N_BEFORE + 100) for i in fed_correct), fed_correct


# -- ADWIN's evidence ---------------------------------------------------------------------------------------


def test_adwin_evidence_splits_the_stream_at_its_cut():
    stream = errors(SEED, 0.1, 0.5, 3_000, 3_000)
    # River's ADWIN, fed directly: where it fires and how wide its window is just after.
    adwin = drift.ADWIN()
    fired = None
    for index, error in enumerate(stream):
        adwin.update(error)
        if adwin.drift_detected:
            fired = index, int(adwin.width)
            break
    assert fired is not None
    index, width = fired
    assert index >= 3_000, "no false alarm before the change in this stream"

    detection = monitor_detections("ADWIN", (), stream)[0]

    # ADWIN's window is always the most recent examples: the cut drops a prefix, keeps the last `width`.
    dropped, kept = stream[: index + 1 - width], stream[index + 1 - width : index + 1]
    assert detection.index == index
    assert detection.window_width == width
    assert detection.before == pytest.approx(sum(dropped) / len(dropped), abs=1e-9)
    assert detection.after == pytest.approx(sum(kept) / len(kept), abs=1e-9)
    assert detection.before == pytest.approx(0.1, abs=0.03)
    assert detection.after > detection.before
    assert detection.rising


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BINARY_ONLY))
def test_regression_refuses_binary_only_detectors(name):
    with pytest.raises(ValueError, match=name):
        DriftMonitor((DetectorSpec.of(name),), task="regression")


@pytest.mark.parametrize("name", sorted(TWO_SIDED))
def test_regression_takes_detectors_of_any_number(name):
    monitor = DriftMonitor((DetectorSpec.of(name, **params_for(name)),), task="regression")
    for value in (0.5, 2.25, 0.0, 13.0):
        assert monitor.update(value) == []
    assert monitor.n == 4


def test_unknown_detector_is_refused_naming_the_choices():
    with pytest.raises(ValueError) as refused:
        DriftMonitor((DetectorSpec.of("ADWIN"), DetectorSpec.of("CUSUM")))
    message = str(refused.value)
    assert "CUSUM" in message
    for name in DETECTORS:
        assert name in message


@pytest.mark.parametrize(
    "spec",
    [
        DetectorSpec.of("ADWIN", no_such_parameter=1),
        DetectorSpec.of("DDM", warning=2.0),
        DetectorSpec.of("KSWIN", alpha=1.5),
        DetectorSpec.of("KSWIN", window_size=10, stat_size=30),
    ],
)
def test_bad_parameters_are_refused(spec):
    with pytest.raises(ValueError):
        DriftMonitor((spec,))


def test_a_monitor_needs_a_detector():
    with pytest.raises(ValueError):
        DriftMonitor(())


def test_reset_restarts_the_count_and_the_detectors():
    stream = errors(SEED, 0.1, 0.5, 3_000, 3_000)
    monitor = DriftMonitor()
    first = [d for error in stream for d in monitor.update(error)]
    assert monitor.n == len(stream)
    assert {d.detector for d in first} == {"ADWIN", "PageHinkley"}

    monitor.reset()
    assert monitor.n == 0
    second = [d for error in stream for d in monitor.update(error)]

    # Detectors that kept the high-error window of the first pass would see no rise the second time.
    assert second == first
    assert monitor.n == len(stream)


@pytest.mark.parametrize(
    ("before", "after", "z"),
    [
        # 0.10 -> 0.30: pooled mean 0.2, squared deviations 200 x 0.16 over 199 degrees of freedom
        ([0] * 90 + [1] * 10, [0] * 70 + [1] * 30, 0.2 / math.sqrt(32 / 199 * (1 / 100 + 1 / 100))),
        ([0] * 70 + [1] * 30, [0] * 90 + [1] * 10, -0.2 / math.sqrt(32 / 199 * (1 / 100 + 1 / 100))),
        ([0, 1] * 50, [0, 1] * 50, 0.0),
        ([0] * 10, [0] * 10, 0.0),  # no variance
        ([], [1, 0], 0.0),
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], 3.0 / math.sqrt(17.5 / 5 * (1 / 3 + 1 / 3))),  # regression errors
    ],
)
def test_rise_z_is_the_pooled_two_sample_statistic(before, after, z):
    assert rise_z(before, after) == pytest.approx(z, rel=1e-12)


def test_kswin_without_a_seed_gives_the_same_detections_on_every_run():
    """KSWIN samples its reference window at random; the spec seeds it unless told otherwise."""
    rng = random.Random(7)
    stream = [rng.gauss(0.0, 1.0) + (0.25 if i >= 1_500 else 0.0) for i in range(3_000)]

    def detected(spec: DetectorSpec) -> list[int]:
        monitor = DriftMonitor((spec,), "regression")
        return [d.index for error in stream for d in monitor.update(error)]

    runs = [detected(DetectorSpec.of("KSWIN")) for _ in range(3)]
    assert runs[0], "the shift at 1,500 is detected"
    assert runs[1] == runs[0] and runs[2] == runs[0]
    # The seed is what makes them equal: another one samples other references and detects elsewhere.
    assert detected(DetectorSpec.of("KSWIN", seed=2)) != runs[0]


def test_proportion_rise_z_is_the_pooled_two_proportion_statistic():
    # 100 errors in 1,000 before, 150 in 500 after: pooled 250/1,500; 0.2 / sqrt(1/6 * 5/6 * (1/1,000 + 1/500))
    assert proportion_rise_z(0.1, 1_000, 0.3, 500) == pytest.approx(9.7980, abs=1e-4)
    assert proportion_rise_z(0.3, 500, 0.1, 1_000) == pytest.approx(-9.7980, abs=1e-4)
    assert proportion_rise_z(0.1, 0, 0.3, 500) == 0.0  # an empty side
    assert proportion_rise_z(0.0, 1_000, 0.0, 500) == 0.0  # no variance
