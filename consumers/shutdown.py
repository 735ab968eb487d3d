"""Stopping on a signal: SIGTERM and SIGINT stop a consume loop, and a shutdown still running after its grace
exits the process with :data:`EXIT_OVERDUE`."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 9.0  # SIGTERM to exit within 10 s (docs/guarantees.md)
EXIT_OVERDUE = 70  # the exit code of a service that did not finish shutting down in time


def stop_on_signals(
    name: str, stop: Callable[[], None], stopping: threading.Event, grace_s: float | None = SHUTDOWN_GRACE_S
) -> None:
    """SIGTERM and SIGINT call ``stop``; ``grace_s`` after the first one the process exits whatever it waits for.

    ``stopping`` is set once a stop was asked: a second signal starts no second timer.
    """

    def on_signal(signum: int, _frame: object) -> None:
        if grace_s is not None and not stopping.is_set():
            overdue = threading.Timer(grace_s, exit_overdue, args=(name, grace_s))
            overdue.daemon = True
            overdue.start()
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def exit_overdue(name: str, grace_s: float) -> None:
    """Log every thread's stack and exit at once, without the last commit (the next instance reads it again)."""
    log.error(
        "%s: still shutting down %g s after the signal; exiting without the last commit (the records after "
        "it are read again); its threads were:",
        name,
        grace_s,
    )
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_OVERDUE)
