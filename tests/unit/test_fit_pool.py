"""The fit workers: results come back, and a failing, dying or overrunning job is a result, not a stuck pool."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.consumers.fit_pool import FitPool, JobResult, _serve
from tests.helpers import fit_jobs

pytestmark = pytest.mark.slow  # fit worker processes


def settle(pool: FitPool, keys: int, timeout_s: float = 60.0) -> dict[str, JobResult]:
    """Collect until ``keys`` results have come back."""
    results: dict[str, JobResult] = {}
    deadline = time.monotonic() + timeout_s
    while len(results) < keys:
        assert time.monotonic() < deadline, f"only {sorted(results)} came back"
        results.update((result.key, result) for result in pool.collect())
        time.sleep(0.01)
    return results


@pytest.fixture
def pool() -> Iterator[FitPool]:
    pool = FitPool(1, timeout_s=30.0, preload=())
    yield pool
    pool.close()


def test_a_job_returns_its_value_and_the_worker_takes_the_next(pool: FitPool):
    assert pool.free() == 1
    pool.submit("a", fit_jobs.add, 2, 3)
    assert (pool.free(), pool.running()) == (0, {"a"})
    with pytest.raises(RuntimeError, match="no free fit worker"):
        pool.submit("b", fit_jobs.add, 1, 1)
    result = settle(pool, 1)["a"]
    assert (result.value, result.reason, result.failed) == (5, None, False)
    pool.submit("b", fit_jobs.add, 4, 4)
    assert settle(pool, 1)["b"].value == 8
    assert pool.free() == 1


def test_a_job_that_raises_is_a_failed_result_with_the_errors_reason(pool: FitPool):
    pool.submit("a", fit_jobs.fail, "single_class")
    result = settle(pool, 1)["a"]
    assert (result.failed, result.reason) == (True, "single_class")
    assert result.message == "RuntimeError: the job failed on purpose"
    pool.submit("b", fit_jobs.add, 1, 2)  # the same worker goes on
    assert settle(pool, 1)["b"].value == 3


def test_a_worker_that_dies_is_reported_and_replaced(pool: FitPool):
    pool.submit("a", fit_jobs.die, 3)
    result = settle(pool, 1)["a"]
    assert (result.reason, result.message) == ("fit_worker_died", "the fit worker died (exit code 3)")
    assert pool.free() == 1
    pool.submit("b", fit_jobs.add, 20, 22)
    assert settle(pool, 1)["b"].value == 42


def test_a_job_past_the_timeout_is_killed_and_reported():
    pool = FitPool(1, timeout_s=0.5, preload=())
    try:
        pool.submit("slow", fit_jobs.sleep, 60)
        result = settle(pool, 1, timeout_s=30)["slow"]
        assert result.reason == "fit_timeout" and "longer than 0.5 s" in result.message
        assert 0.5 < result.seconds < 30
        pool.submit("next", fit_jobs.add, 1, 1)
        assert settle(pool, 1)["next"].value == 2
    finally:
        pool.close()


def test_two_workers_run_two_jobs_at_once(tmp_path: Path):
    # The first job returns only once the second has run: with one worker the second would wait for the first.
    gate = str(tmp_path / "gate")
    pool = FitPool(2, preload=())
    try:
        pool.submit("waits", fit_jobs.wait_for, gate, 30.0)
        pool.submit("opens", fit_jobs.touch, gate)
        results = settle(pool, 2, timeout_s=60)
        assert (results["waits"].value, results["opens"].value) == (gate, gate)
    finally:
        pool.close()


def test_close_kills_a_running_job_at_once():
    pool = FitPool(1, preload=())
    pool.submit("long", fit_jobs.sleep, 60)
    time.sleep(0.2)
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 10  # not the job's 60 s
    assert pool.running() == set()


def test_a_name_already_running_is_refused(pool: FitPool, tmp_path: Path):
    pool.submit("a", fit_jobs.wait_for, str(tmp_path / "never"), 30.0)
    with pytest.raises(ValueError, match="already running"):
        pool.submit("a", fit_jobs.add, 1, 1)


def test_a_worker_whose_trainer_is_gone_before_the_job_starts_exits_quietly(capfd: pytest.CaptureFixture[str]):
    """The trainer killed between handing a job over and the worker taking it: the worker exits 0, no traceback."""
    context = multiprocessing.get_context("spawn")
    trainer_end, worker_end = context.Pipe()
    worker = context.Process(target=_serve, args=(worker_end, None, ()), name="retrain-fit", daemon=True)
    worker.start()
    worker_end.close()
    trainer_end.send((fit_jobs.add, (2, 3)))
    trainer_end.close()  # gone before the worker can say it started
    worker.join(60)
    assert worker.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
