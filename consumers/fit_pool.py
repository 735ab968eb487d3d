"""Fits in worker processes, off the consume loop: the trainer keeps polling while a model is fitted.

Long-lived workers, spawned (a fork would copy the Kafka clients' threads), each running one job at a time: a
module-level function and its arguments, whose return value comes back through a pipe. A worker that dies, or
whose job outlives the timeout, is killed and replaced, and its job is reported as failed with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0  # an idle worker asked to stop is killed after this


@dataclass(frozen=True)
class JobResult:
    """A finished job: its value, or why it has none (``reason`` a short code, ``message`` the detail)."""

    key: str
    value: Any = None
    reason: str | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.reason is not None


def _exit_with_parent(parent: int) -> None:
    """A worker whose trainer was killed (kill -9) stops too, instead of finishing a fit nobody will read."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve(conn: Connection, threads: int | None, preload: tuple[str, ...]) -> None:
    """A worker's life: take a job, say it started, run it, send back ("ok", value) or ("error", reason, message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the trainer stops its workers
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    for module in preload:
        importlib.import_module(module)
    from threadpoolctl import threadpool_limits

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        function, args = job
        try:
            conn.send(("started",))  # the timeout counts from here, not from the worker's own start-up
        except OSError:  # the trainer is gone (BrokenPipeError, e.g. killed): nobody will read this fit
            return
        try:
            with threadpool_limits(threads):
                reply: tuple = ("ok", function(*args))
        except Exception as error:  # a job's failure is its result, not the worker's end
            reply = ("error", getattr(error, "reason", "fit_error"), f"{type(error).__name__}: {error}")
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as error:  # the value does not pickle
            conn.send(("error", "fit_error", f"the result cannot be sent back: {type(error).__name__}: {error}"))


class _Worker:
    def __init__(self, context: Any, threads: int | None, preload: tuple[str, ...]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, threads, preload), name="retrain-fit", daemon=True)
        self.process.start()
        child.close()
        self.key: str | None = None
        self.started: float | None = None  # when the worker said it started the job

    def stop(self, grace_s: float) -> None:
        if self.key is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.conn.close()


class FitPool:
    """``workers`` processes; :meth:`submit` a job when :meth:`free` > 0, :meth:`collect` what has finished."""

    def __init__(
        self,
        workers: int = 1,
        *,
        threads: int | None = 1,
        timeout_s: float = 3600.0,
        preload: tuple[str, ...] = ("retrain.decisions.training",),
    ) -> None:
        if workers < 1 or timeout_s <= 0:
            raise ValueError("need workers >= 1 and timeout_s > 0")
        self.size = workers
        self.threads = threads  # OpenMP/BLAS threads per job; None: the libraries' default
        self.timeout_s = timeout_s
        self.preload = preload
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def start(self) -> None:
        """Start every worker now (they start on first use otherwise): the first fit then skips the imports."""
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self._context, self.threads, self.preload))

    def free(self) -> int:
        return self.size - len(self.running())

    def running(self) -> set[str]:
        return {worker.key for worker in self._workers if worker.key is not None}

    def submit(self, key: str, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` in a free worker; ``key`` names its result. Needs :meth:`free` > 0."""
        if key in self.running():
            raise ValueError(f"a job named {key!r} is already running")
        worker = next((w for w in self._workers if w.key is None), None)
        if worker is None:
            if len(self._workers) >= self.size:
                raise RuntimeError("no free fit worker")
            worker = _Worker(self._context, self.threads, self.preload)
            self._workers.append(worker)
        worker.conn.send((function, args))
        worker.key, worker.started = key, None

    def collect(self) -> list[JobResult]:
        """The jobs finished since the last call, the failed ones included; never waits."""
        results = []
        for worker in list(self._workers):
            if worker.key is None:
                if not worker.process.is_alive():  # died idle: replaced on the next submit
                    self._drop(worker)
                continue
            alive = worker.process.is_alive()  # asked before the pipe: a reply sent just before exiting is read
            try:
                reply = self._reply(worker)
            except (EOFError, OSError):
                results.append(self._died(worker))
                continue
            if reply is not None:
                key, seconds = worker.key, self._seconds(worker)
                if reply[0] == "ok":
                    results.append(JobResult(key, value=reply[1], seconds=seconds))
                else:
                    results.append(JobResult(key, reason=reply[1], message=reply[2], seconds=seconds))
                worker.key, worker.started = None, None
            elif not alive:
                results.append(self._died(worker))
            elif self._seconds(worker) > self.timeout_s:
                results.append(self._kill_overdue(worker))
        return results

    def close(self) -> None:
        """Stop every worker; a running job is killed (its event was not answered, so it is read again)."""
        for worker in self._workers:
            worker.stop(STOP_GRACE_S)
        self._workers.clear()

    @staticmethod
    def _reply(worker: _Worker) -> tuple | None:
        """The job's reply if it has come; a "started" notice on the way sets the job's start."""
        while worker.conn.poll():
            message = worker.conn.recv()
            if message[0] != "started":
                return message
            worker.started = time.monotonic()
        return None

    @staticmethod
    def _seconds(worker: _Worker) -> float:
        return 0.0 if worker.started is None else time.monotonic() - worker.started

    def _kill_overdue(self, worker: _Worker) -> JobResult:
        assert worker.key is not None
        seconds = self._seconds(worker)
        log.error("fit %s: still running after %.0f s; killing its worker", worker.key, seconds)
        worker.process.kill()
        worker.process.join(5.0)
        self._drop(worker)
        return JobResult(
            worker.key,
            reason="fit_timeout",
            message=f"the fit ran longer than {self.timeout_s:g} s (RETRAIN_TRAINER_FIT_TIMEOUT_S)",
            seconds=seconds,
        )

    def _died(self, worker: _Worker) -> JobResult:
        seconds = self._seconds(worker)
        worker.process.join(5.0)
        code = worker.process.exitcode
        log.error("fit %s: its worker died (exit code %s)", worker.key, code)
        assert worker.key is not None
        result = JobResult(
            worker.key, reason="fit_worker_died", message=f"the fit worker died (exit code {code})", seconds=seconds
        )
        self._drop(worker)
        return result

    def _drop(self, worker: _Worker) -> None:
        worker.conn.close()
        self._workers.remove(worker)
