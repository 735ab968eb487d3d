"""SIGTERM to exit is bounded: a service stuck in its last commit exits on its own after the grace."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from retrain.consumers.shutdown import EXIT_OVERDUE
from tests.conftest import REPO_ROOT

STUCK_SERVICE = textwrap.dedent(
    """
    import logging, os, signal, threading, time
    from types import SimpleNamespace
    from retrain.consumers.runtime import ConsumeLoop

    logging.basicConfig(level=logging.WARNING)
    publisher = SimpleNamespace(producer=SimpleNamespace(transactional=False))
    service = SimpleNamespace(name="stuck")
    loop = ConsumeLoop(service, consumer=None, publisher=publisher, topics=["t"])
    loop.install_signal_handlers(grace_s={grace})
    os.kill(os.getpid(), signal.SIGTERM)
    print("stopping:", loop._stopping.is_set(), flush=True)
    if {hang}:
        threading.Event().wait()  # a last commit that never returns
    print("finished in time", flush=True)
    """
)


def run(grace: float, hang: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK_SERVICE.format(grace=grace, hang=hang)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - started


def test_a_service_stuck_after_sigterm_exits_after_the_grace_with_its_stacks_logged():
    done, _ = run(grace=0.5, hang=True)
    assert done.returncode == EXIT_OVERDUE
    assert "stopping: True" in done.stdout and "finished in time" not in done.stdout
    assert "stuck: still shutting down 0.5 s after the signal; exiting without the last commit" in done.stderr
    assert "Thread 0x" in done.stderr and "in <module>" in done.stderr  # faulthandler's dump of the hung thread


def test_a_service_that_finishes_in_time_is_not_cut_short():
    done, _ = run(grace=5.0, hang=False)
    assert done.returncode == 0, done.stderr
    assert "finished in time" in done.stdout and "still shutting down" not in done.stderr
