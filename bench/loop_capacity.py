"""Benchmark: the highest rate the whole loop sustains (scorer, detector and trainer), for each Kafka client.

The loop is the demo's (``retrain.demo.demo_settings``: this run's own topics with 2 stream partitions, consumer
groups and a signed registry), but each service runs as a process of its own (``retrain scorer``, ``retrain
detector``, ``retrain trainer``). ``retrain replay`` feeds it one stationary SEA stream (one model, label noise
0.1, every request labelled after ``--label-delay``) at rates raised step by step, one replay process per step
of ``--step-seconds``. Once a second each service's lag is read: its topics' end offsets minus the records it has
handled (``retrain_records_consumed_total`` on its /metrics), in seconds of input. A step is sustained when the
replayer kept its rate (at least 90% of it, between its first and last progress lines) and, at the end of the
step, neither the scorer nor the detector is more than ``--max-behind`` seconds of input behind: a consumer
slower than about 90% of the rate falls further behind than that within a 20 s step. The lags at a third, two
thirds and the end of each step are printed, with the CPU time each process took. Stepping stops at the first
step not sustained. The trainer answers the cold-start retrain (version 1, then swapped into the scorer) in the
first step; its lag is printed, not judged (a fit holds its consumption). The detector's committed offsets are
printed too (end offsets minus its group's commits), not judged. Usage:

    .venv/bin/python -m bench.loop_capacity [--rates 1000,2000,4000,8000] [--step-seconds 20]
        [--clients kafka-python,confluent-kafka]

Without --bootstrap it starts the project's broker on 127.0.0.1:19596 (fresh data) and stops it after.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.kafka import GroupWatch, benchmark_kafka, broker_pid
from bench.services import ServiceProcess, children_cpu_seconds, cpu_seconds, settings_env, wait_until
from retrain.demo import demo_settings
from retrain.kafka import make_admin
from retrain.settings import KafkaSettings, Settings
from retrain.topics import ensure_topics, pipeline_topics

PORT = 19596
MODEL = "loop"
SERVICES = ("scorer", "detector", "trainer")
KEPT_PACE = 0.9  # the share of the asked rate the replayer must reach for a step to count
_PROGRESS = re.compile(r"^replay: ([\d,]+) requests, .*?; ([\d.]+) s, ", re.MULTILINE)


@dataclass
class Step:
    rate: int
    achieved: float
    behind: dict[str, list[float]]  # service -> seconds of input read but not yet handled, once a second
    commit_behind: list[float]  # the detector's committed offsets, in seconds of input behind the ends
    cpu: dict[str, float]  # process -> CPU seconds over the step
    wall: float

    def end(self, service: str) -> float:
        samples = self.behind[service]
        return statistics.median(samples[-3:]) if samples else float("inf")

    def bounded(self, max_behind: float) -> bool:
        return all(self.end(service) <= max_behind for service in ("scorer", "detector"))

    def verdict(self, max_behind: float) -> str:
        if not self.bounded(max_behind):
            return "NOT sustained (lag grew)"
        if self.achieved < KEPT_PACE * self.rate:
            return f"NOT sustained (the replayer fell short: {self.achieved / self.rate:.0%} of the rate)"
        return "sustained"


def start_loop(settings: Settings, workdir: Path) -> dict[str, ServiceProcess]:
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, pipeline_topics(settings.topics))
    finally:
        admin.close()
    env = settings_env(settings)
    services = {name: ServiceProcess(name, env, workdir / f"{name}.log") for name in SERVICES}
    watch = GroupWatch(settings.kafka)
    groups = [getattr(settings, name).group_id for name in SERVICES]
    try:
        wait_until(lambda: all(watch.assigned(g) for g in groups), "every service assigned", 120, [*services.values()])
    finally:
        watch.close()
    return services


def replay(settings: Settings, rate: int, seconds: float, label_delay: str, workdir: Path) -> ServiceProcess:
    """``retrain replay`` of ``rate * seconds`` examples at ``rate``, as a process, its progress once a second."""
    return ServiceProcess(
        "replay",
        settings_env(settings),
        workdir / f"replay-{rate}.log",
        args=(
            f"--model-id={MODEL} --generator=sea --concepts=0 --noise=0.1 --examples={int(rate * seconds)} "
            f"--rate={rate} --label-delay={label_delay} --run-id=step{rate} --progress-every={rate}"
        ).split(),
    )


def achieved_rate(log: str) -> float:
    """Requests/s between the replayer's first and last progress lines (its start-up and final flush left out)."""
    progress = [(int(n.replace(",", "")), float(s)) for n, s in _PROGRESS.findall(log)]
    if len(progress) < 2:
        raise RuntimeError(f"too few progress lines from retrain replay to tell its rate:\n{log[-2000:]}")
    (first_n, first_s), (last_n, last_s) = progress[0], progress[-1]
    return (last_n - first_n) / (last_s - first_s)


def run_step(
    settings: Settings, services: dict[str, ServiceProcess], rate: int, seconds: float, label_delay: str, workdir: Path
) -> Step:
    topics, partitions = settings.topics, settings.topics.stream_partitions
    reads = {  # service -> the topics it reads, and their records per example
        "scorer": ([topics.scoring_requests], 1),
        "detector": ([topics.predictions, topics.labels], 2),
        "trainer": ([topics.labeled_examples], 1),
    }
    replayer = replay(settings, rate, seconds, label_delay, workdir)
    pids = {name: s.pid for name, s in services.items()} | {"broker": broker_pid(PORT) or 0}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
    exited_before = children_cpu_seconds()  # the replayer's CPU time, once it has exited and been waited for
    started = time.monotonic()
    behind: dict[str, list[float]] = {name: [] for name in reads}
    commit_behind: list[float] = []
    watch = GroupWatch(settings.kafka)
    try:
        while replayer.running:
            for name, (read, per_example) in reads.items():
                service = services[name]
                service.check_alive()
                handled = sum(service.value("retrain_records_consumed_total", topic=topic) for topic in read)
                behind[name].append((watch.ends(read, partitions) - handled) / (per_example * rate))
            detector_lag = watch.committed_lag(settings.detector.group_id, reads["detector"][0], partitions)
            commit_behind.append(detector_lag / (2 * rate))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))
    finally:
        replayer.stop()  # when a service died under it: no replayer outlives the benchmark
        watch.close()
    wall = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items() if name in cpu_before}
    cpu["replay"] = children_cpu_seconds() - exited_before
    if replayer.process.returncode != 0:
        raise RuntimeError(f"retrain replay failed ({replayer.process.returncode}):\n{replayer.tail()}")
    achieved = achieved_rate(replayer.log.read_text(errors="replace"))
    return Step(rate, achieved, behind, commit_behind, cpu, wall)


def _path(samples: list[float]) -> str:
    """The samples at a third, two thirds and the end of the step (the end: median of the last three)."""
    marks = [samples[len(samples) // 3], samples[2 * len(samples) // 3]] if len(samples) >= 3 else []
    end = statistics.median(samples[-3:]) if samples else float("nan")
    return " -> ".join(f"{value:.1f}" for value in [*marks, end])


def report(label: str, step: Step, max_behind: float) -> None:
    verdict = step.verdict(max_behind)
    print(
        f"{label} {step.rate:>6,}/s asked, {step.achieved:,.0f}/s replayed: {verdict}; seconds of input not yet "
        f"handled at 1/3, 2/3, end: scorer {_path(step.behind['scorer'])}, detector {_path(step.behind['detector'])}"
        f", trainer {_path(step.behind['trainer'])}; detector's commits behind {_path(step.commit_behind)}"
    )
    used = ", ".join(f"{name} {seconds / step.wall:.0%}" for name, seconds in step.cpu.items())
    together = sum(step.cpu.values()) / step.wall
    print(f"{label}   CPU over the {step.wall:.0f} s step (of one core): {used}; together {together:.2f} cores")


def capacity(kafka: KafkaSettings, args: argparse.Namespace, workdir: Path) -> int:
    """The highest rate sustained with this client (0: not even the first)."""
    run_id = secrets.token_hex(4)
    settings = demo_settings(Settings(kafka=kafka), run_id, None, workdir / run_id)
    label = f"[{kafka.client}]"
    services = start_loop(settings, workdir / run_id)
    best, ceiling = 0, False
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            step = run_step(settings, services, rate, args.step_seconds, args.label_delay, workdir / run_id)
            report(label, step, args.max_behind)
            if step.verdict(args.max_behind) != "sustained":
                ceiling = True
                break
            best = rate
    finally:
        for service in services.values():
            service.stop()
    more = "" if ceiling else " (every rate tried was sustained: the capacity is higher)"
    print(f"{label} highest sustained: {best:,} examples/s{more}" if best else f"{label} no rate sustained")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,2000,4000,8000", help="examples/s of each step, rising")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--label-delay", default="uniform:0.1,0.5", help="as retrain replay's (the demo's default)")
    parser.add_argument("--max-behind", type=float, default=2.0, help="seconds of input a sustaining consumer may lag")
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, shared by the broker, the three services, the replayer and this process")
    with benchmark_kafka(args.bootstrap, port=PORT) as kafka, tempfile.TemporaryDirectory() as workdir:
        found = {
            client: capacity(kafka.model_copy(update={"client": client}), args, Path(workdir))
            for client in args.clients.split(",")
        }
    print("highest sustained examples/s: " + ", ".join(f"{client} {rate:,}" for client, rate in found.items()))


if __name__ == "__main__":
    main()
