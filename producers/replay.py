"""Replay a stream into Kafka the way a scoring service's clients would: requests now, ground truth later.

For each example ``i`` of a :class:`producers.streams.StreamSource`, the replayer publishes a
:class:`schemas.ScoringRequest` whose ``prediction_id`` is ``f"{run_id}-{i:08d}"``, and, for a seeded fraction of
them, a :class:`schemas.LabelEvent` after a delay drawn from a distribution (``"0"``, ``"fixed:2.5"``,
``"uniform:1,5"``, ``"exp:2.0"``, in seconds). Labels wait in a heap keyed by when they are due and go out when
their time comes; at the end the rest are sent at once, or when due with ``wait_for_labels``. Requests are paced
by a token bucket (the schedule does not drift with the time each send takes), and :meth:`Replayer.stop` ends a
replay cleanly: no more requests, the labels of those sent go out, everything is flushed.

Which predictions get a label, and their delays, depend only on the seed: the same seed gives the same subset.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import TypeAdapter

from retrain.kafka import PublishFailed
from retrain.producers.publisher import EventPublisher
from retrain.producers.streams import Example
from retrain.schemas import LabelEvent, ScoringRequest
from retrain.schemas.types import ModelId

DelayKind = Literal["fixed", "uniform", "exp"]
_RUN_ID = re.compile(r"[!-~]{1,100}")  # prediction ids are printable ASCII, at most 128 characters
_MODEL_ID = TypeAdapter(ModelId)


# -- label delays -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDelay:
    """A distribution of label delays in seconds: fixed ``a``, uniform on ``[a, b]``, or exponential of mean ``a``."""

    kind: DelayKind
    a: float = 0.0
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return rng.expovariate(1.0 / self.a)

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a


def parse_label_delay(spec: str) -> LabelDelay:
    """``"0"`` or ``"2.5"`` (fixed), ``"fixed:2.5"``, ``"uniform:1,5"``, ``"exp:2.0"`` (mean); seconds, >= 0."""
    text = spec.strip().lower()
    kind, sep, params = text.partition(":")
    if not sep:
        kind, params = "fixed", text
    try:
        values = [float(part) for part in params.split(",")]
    except ValueError:
        raise ValueError(_delay_help(spec)) from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{_delay_help(spec)}: delays are finite numbers of seconds >= 0")
    if kind == "fixed" and len(values) == 1:
        return LabelDelay("fixed", values[0])
    if kind == "uniform" and len(values) == 2:
        if values[0] > values[1]:
            raise ValueError(f"{_delay_help(spec)}: uniform:LOW,HIGH needs LOW <= HIGH")
        return LabelDelay("uniform", values[0], values[1])
    if kind == "exp" and len(values) == 1:
        if values[0] <= 0:
            raise ValueError(f"{_delay_help(spec)}: exp:MEAN needs a mean > 0")
        return LabelDelay("exp", values[0])
    raise ValueError(_delay_help(spec))


def _delay_help(spec: str) -> str:
    return f"invalid label delay {spec!r}; use 0, fixed:SECONDS, uniform:LOW,HIGH or exp:MEAN"


class LabelSampler:
    """Which examples get a label (``fraction`` of them) and after how long; seeded, so a replay repeats.

    The subset and the delays come from two generators of their own, so the subset does not depend on the
    delay distribution.
    """

    def __init__(self, fraction: float, delay: LabelDelay, seed: int) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"the label fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction
        self.delay = delay
        self._keep = random.Random(f"label-fraction:{seed}")
        self._delays = random.Random(f"label-delay:{seed}")

    def draw(self) -> float | None:
        """The next example's label delay in seconds, or None when its label is withheld."""
        if self.fraction < 1 and self._keep.random() >= self.fraction:
            return None
        return self.delay.sample(self._delays)


# -- scheduling ---------------------------------------------------------------------------------------------


class LabelSchedule:
    """Labels waiting to be sent, ordered by when they are due (ties: in the order they were added)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, LabelEvent]] = []
        self._order = itertools.count()

    def add(self, due: float, label: LabelEvent) -> None:
        heapq.heappush(self._heap, (due, next(self._order), label))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[LabelEvent]:
        """The labels due at ``now`` or earlier, earliest first; they leave the schedule."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def drain(self) -> list[LabelEvent]:
        """Every label left, earliest first."""
        return [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]

    def __len__(self) -> int:
        return len(self._heap)


class TokenBucket:
    """Paces sends at ``rate`` per second with bursts of up to ``capacity`` to make up for a late wake-up.

    :meth:`reserve` takes a token and says how long to wait for it; waiting longer than asked leaves tokens in
    the bucket rather than slowing the average, so the achieved rate does not drift below ``rate``.
    """

    def __init__(self, rate: float, now: float, capacity: float | None = None) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"the rate must be a positive number of examples per second, got {rate}")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate / 20)  # 50 ms of sends
        self._tokens = 1.0
        self._at = now

    def reserve(self, now: float) -> float:
        """Seconds to wait, from ``now``, before the next send (0 when a token is there)."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


# -- the replay ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayConfig:
    rate: float | None = None  # examples per second; None: as fast as the producer goes
    label_delay: str = "0"  # see parse_label_delay
    label_fraction: float = 1.0  # in (0, 1]: the share of predictions that ever get a label
    seed: int = 0
    wait_for_labels: bool = False  # at the end, send each remaining label when it is due (else all at once)

    def __post_init__(self) -> None:
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"the rate must be a positive number of examples per second, got {self.rate}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"the label fraction must be in (0, 1], got {self.label_fraction}")
        parse_label_delay(self.label_delay)

    @property
    def delay(self) -> LabelDelay:
        return parse_label_delay(self.label_delay)


@dataclass
class ReplayStats:
    run_id: str
    requests_sent: int = 0
    labels_sent: int = 0
    labels_withheld: int = 0
    labels_pending: int = 0  # scheduled but not sent yet
    send_errors: int = 0  # records the broker did not acknowledge
    elapsed_s: float = 0.0
    stopped: bool = False  # ended by stop() before the stream did

    @property
    def rate_achieved(self) -> float:
        """Requests per second over the replay so far."""
        return self.requests_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        pending = f", {self.labels_pending:,} pending" if self.labels_pending else ""
        errors = f", {self.send_errors:,} NOT ACKNOWLEDGED" if self.send_errors else ""
        return (
            f"{self.requests_sent:,} requests, {self.labels_sent:,} labels sent, {self.labels_withheld:,} withheld"
            f"{pending}{errors}; {self.elapsed_s:.1f} s, {self.rate_achieved:,.0f} requests/s"
        )


class Replayer:
    """Publishes one stream's requests and labels for one model. Call :meth:`run` once; :meth:`stop` from anywhere."""

    def __init__(
        self,
        publisher: EventPublisher,
        source: Iterable[Example],
        model_id: str,
        config: ReplayConfig | None = None,
        *,
        run_id: str | None = None,
        progress: Callable[[ReplayStats], None] | None = None,
        progress_every: int = 10_000,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.model_id = _MODEL_ID.validate_python(model_id)
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        if not _RUN_ID.fullmatch(self.run_id):
            raise ValueError(f"run id {self.run_id!r} must be 1 to 100 printable ASCII characters without spaces")
        if progress_every < 1:
            raise ValueError("progress_every must be >= 1")
        self.publisher = publisher
        self.source = source
        self.config = config or ReplayConfig()
        self.progress = progress
        self.progress_every = progress_every
        self.wall_clock = wall_clock
        self.stats = ReplayStats(self.run_id)
        self.sampler = LabelSampler(self.config.label_fraction, self.config.delay, self.config.seed)
        self.schedule = LabelSchedule()
        self._stop = threading.Event()
        self._started = 0.0

    def stop(self, *_: object) -> None:
        """End the replay: no more requests; the labels already scheduled are sent and everything is flushed."""
        self._stop.set()

    def prediction_id(self, index: int) -> str:
        return f"{self.run_id}-{index:08d}"

    def run(self) -> ReplayStats:
        self._started = time.monotonic()
        bucket = TokenBucket(self.config.rate, self._started) if self.config.rate is not None else None
        try:
            for index, example in enumerate(self.source):
                if bucket is not None:
                    self._wait_until(time.monotonic() + bucket.reserve(time.monotonic()))
                if self._stop.is_set():
                    break
                self._send_due_labels()
                self._send_request(index, example)
                if self.progress is not None and (index + 1) % self.progress_every == 0:
                    self.progress(self._update())
            else:
                if self.config.wait_for_labels:
                    while len(self.schedule) and not self._stop.is_set():
                        self._wait_until(self.schedule.next_due() or 0.0)
                        self._send_due_labels()
            self.stats.stopped = self._stop.is_set()
        finally:
            for label in self.schedule.drain():
                self._send_label(label)
            with contextlib.suppress(PublishFailed):  # each failed record is counted by its delivery callback
                self.publisher.flush()
        return self._update()

    # -- internals ------------------------------------------------------------------------------------------

    def _send_request(self, index: int, example: Example) -> None:
        at = example.timestamp or self.wall_clock()
        request = ScoringRequest(
            prediction_id=self.prediction_id(index), model_id=self.model_id, features=example.features, timestamp=at
        )
        self.publisher.publish(request, on_delivery=self._delivered)
        self.stats.requests_sent += 1
        delay = self.sampler.draw()
        if delay is None:
            self.stats.labels_withheld += 1
            return
        label = LabelEvent(
            prediction_id=request.prediction_id,
            model_id=self.model_id,
            label=example.target,
            timestamp=at + timedelta(seconds=delay),
        )
        self.schedule.add(time.monotonic() + delay, label)

    def _send_due_labels(self) -> None:
        if len(self.schedule) and (self.schedule.next_due() or 0.0) <= time.monotonic():
            for label in self.schedule.pop_due(time.monotonic()):
                self._send_label(label)

    def _send_label(self, label: LabelEvent) -> None:
        self.publisher.publish(label, on_delivery=self._delivered)
        self.stats.labels_sent += 1

    def _wait_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (monotonic), sending labels as they come due; return early on stop."""
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            due = self.schedule.next_due()
            if due is not None and due <= now:
                self._send_due_labels()
                continue
            self._stop.wait(min(deadline, due) - now if due is not None else deadline - now)

    def _delivered(self, error: Exception | None, _partition: int, _offset: int) -> None:  # on a client thread
        if error is not None:
            self.stats.send_errors += 1

    def _update(self) -> ReplayStats:
        self.stats.elapsed_s = time.monotonic() - self._started
        self.stats.labels_pending = len(self.schedule)
        return self.stats


def replay(
    publisher: EventPublisher,
    source: Iterable[Example],
    model_id: str,
    config: ReplayConfig | None = None,
    *,
    run_id: str | None = None,
) -> ReplayStats:
    """Replay ``source`` to the end (see :class:`Replayer`); return the statistics."""
    return Replayer(publisher, source, model_id, config, run_id=run_id).run()
