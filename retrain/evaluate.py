"""Offline evaluation of retraining strategies on one stream: static, scheduled, threshold, each detector alone,
the default policy and the oracle, each run by :func:`retrain.simulation.simulate` with the services' own
decision code; their gain over static, a table and the JSON report of ``retrain evaluate``. No Kafka.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from retrain.decisions.drift import DETECTORS, DetectorSpec, Task
from retrain.decisions.policy import PolicyConfig
from retrain.simulation import (
    LabelArrivals,
    Strategy,
    StrategyResult,
    StreamExample,
    TrainerSetup,
    simulate,
)

if TYPE_CHECKING:
    from retrain.producers.replay import LabelDelay


def strategies(
    default: PolicyConfig,
    *,
    scheduled_every: int,
    drift_points: Sequence[int] = (),
    detectors: Sequence[str] | None = None,
) -> list[Strategy]:
    """static, scheduled, threshold, each detector alone, default, and oracle (when drift points are given)."""
    quiet = replace(
        default,
        detectors=(),
        relative_drop=None,
        min_accuracy=None,
        max_error=None,
        volume_examples=None,
        feature_detector=None,
    )
    # The baselines as a team would wire them: one fit at the cold start, then the latest window when asked.
    naive = replace(quiet, post_change_training=False)
    chosen = [
        Strategy("static", naive),
        Strategy(
            "scheduled",
            replace(naive, volume_examples=scheduled_every, cooldown_examples=scheduled_every, cooldown_s=math.inf),
        ),
        # The seed's rule: retrain on the latest window when accuracy falls under 0.9 x the initial accuracy.
        Strategy("threshold", replace(naive, relative_drop=0.9)),
    ]
    for name in detectors if detectors is not None else DETECTORS:
        if DETECTORS[name].binary_only and default.task == "regression":
            continue
        chosen.append(Strategy(name, replace(quiet, detectors=(DetectorSpec.of(name),), drift_quorum=1)))
    chosen.append(Strategy("default", default))
    if drift_points:
        chosen.append(Strategy("oracle", quiet, oracle=True))
    return chosen


def gain(results: dict[str, StrategyResult], name: str = "default") -> float | None:
    """How much of the oracle's gain over static a strategy captures: (it - static) / (oracle - static), in
    accuracy or in mean absolute error (where the gain is a fall)."""
    if "oracle" not in results or "static" not in results:
        return None
    static = results["static"].score
    possible = results["oracle"].score - static
    if results["static"].task == "regression":
        possible = -possible
        return (static - results[name].score) / possible if possible > 0 else None
    return (results[name].score - static) / possible if possible > 0 else None


def run(
    examples: Sequence[StreamExample],
    chosen: Sequence[Strategy],
    trainer: TrainerSetup,
    *,
    task: Task = "classification",
    drift_points: Sequence[int] = (),
    initial: int | None = None,
    progress: Callable[[StrategyResult], None] | None = None,
    labels: LabelArrivals | None = None,
) -> dict[str, StrategyResult]:
    results = {}
    for strategy in chosen:
        result = simulate(
            examples, strategy, trainer, task=task, drift_points=drift_points, initial=initial, labels=labels
        )
        results[strategy.name] = result
        if progress is not None:
            progress(result)
    return results


def table(results: dict[str, StrategyResult]) -> str:
    metric = next(iter(results.values())).metric if results else "accuracy"
    lines = [f"{'strategy':<12} {metric:>9} {'retrains':>9} {'detections':>11} {'delays':<24} {'false':>6}"]
    for result in results.values():
        delays = ",".join(str(d) for d in result.detection_delays) or "-"
        lines.append(
            f"{result.name:<12} {result.score:>9.4f} {result.retrains:>9} {len(result.detections):>11} "
            f"{delays:<24} {result.false_alarms:>6}"
        )
    return "\n".join(lines)


def evaluate_stream(
    source: Any,
    detector_settings: Any,
    trainer_settings: Any,
    *,
    scheduled_every: int,
    initial: int | None = None,
    names: Sequence[str] | None = None,
    progress: Callable[[StrategyResult], None] | None = None,
    label_delay: LabelDelay | None = None,
    delay_unit: Literal["examples", "seconds"] = "examples",
    task: Task = "classification",
) -> dict[str, StrategyResult]:
    """Every strategy on one stream, with the policy and trainer the services would build from these settings;
    labels after ``label_delay`` (in ``delay_unit``), at once without one."""
    from threadpoolctl import threadpool_limits

    from retrain.configure import estimator_choice, policy_config, training_config

    default = policy_config(detector_settings, task)
    trainer = TrainerSetup(
        training_config(trainer_settings),
        estimator_choice(trainer_settings)("evaluated", task),
        cold_start_min=trainer_settings.cold_start_min,
        buffer_max_examples=trainer_settings.buffer_max_examples,
        buffer_max_age_s=trainer_settings.buffer_max_age_s,
    )
    chosen = strategies(default, scheduled_every=scheduled_every, drift_points=source.drift_points)
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {[s.name for s in chosen]}")
        chosen = [s for s in chosen if s.name in names]
    examples = list(source)
    labels = LabelArrivals(examples, label_delay, delay_unit) if label_delay is not None else None
    # One thread per fit: the figures do not depend on how busy the machine is, and nothing oversubscribes.
    with threadpool_limits(1):
        return run(
            examples,
            chosen,
            trainer,
            task=task,
            drift_points=source.drift_points,
            initial=initial,
            progress=progress,
            labels=labels,
        )


def report(results: dict[str, StrategyResult]) -> dict[str, Any]:
    """The JSON document of ``retrain evaluate --json``."""
    document: dict[str, Any] = {"strategies": {name: result.summary() for name, result in results.items()}}
    captured = gain(results)
    if captured is not None:
        document["gain"] = round(captured, 6)
    return document
