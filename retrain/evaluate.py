"""Offline evaluation: replay one stream through retraining strategies with the services' own decision code.

No Kafka. Each strategy is a :class:`PolicyConfig` for :class:`ModelWatch` (the detector's brain) and the
trainer's :func:`choose_window` / :func:`train_challenger` / promotion rule, glued the way the services glue
them: predict with the model in service, join with the label, observe, and on a retrain event fit, validate
and maybe swap. Labels arrive right after their prediction, or after a delay drawn from a distribution
(:class:`LabelArrivals`, in examples or in event time): decisions see a label only once it has arrived, a new
version serves from the example after the one at which it was promoted, and accuracy is over every prediction
served. Accuracy is prequential: each example is predicted before it is learned from.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from retrain.decisions.drift import DETECTORS, DetectorSpec, Task
from retrain.decisions.policy import ModelWatch, PolicyConfig, example_error
from retrain.decisions.training import (
    EstimatorFactory,
    ExampleBuffer,
    FittedModel,
    TrainingConfig,
    TrainingFailure,
    choose_window,
    needs_evidence,
    train_challenger,
)
from schemas import LabeledExample, RetrainEvent, RetrainReason
from schemas.types import FeatureValue

if TYPE_CHECKING:
    from producers.replay import LabelDelay

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SPACING = timedelta(milliseconds=10)  # event time between generated examples (keeps time cooldowns out of play)
PREDICT_BATCH = 512
_DEGRADATION = (RetrainReason.DRIFT, RetrainReason.PERFORMANCE)


class StreamExample:
    """What the evaluation needs of an example: features, target, and an optional event time."""

    features: dict[str, FeatureValue]
    target: Any
    timestamp: datetime | None


@dataclass(frozen=True)
class Strategy:
    name: str
    policy: PolicyConfig
    oracle: bool = False  # opens an episode at each true drift point instead of detecting


@dataclass(frozen=True)
class TrainerSetup:
    """The trainer's side of the evaluation: the same settings the trainer service reads."""

    config: TrainingConfig
    factory: EstimatorFactory
    cold_start_min: int = 1_000
    buffer_max_examples: int = 100_000
    buffer_max_age_s: float = 7 * 24 * 3600.0


@dataclass
class StrategyResult:
    name: str
    correct: bytearray
    warmup: int
    retrains: int = 0  # fits after the first model (a rejected challenger was still a retrain)
    promotions: int = 0
    failures: int = 0
    detections: list[int] = field(default_factory=list)  # positions where an episode opened
    swaps: list[int] = field(default_factory=list)  # first position predicted by a new version
    events: list[tuple[int, str, int | None]] = field(default_factory=list)  # (position, reason, window)
    detection_delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    missed: int = 0
    task: Task = "classification"
    absolute_errors: array = field(default_factory=lambda: array("d"))  # regression: |prediction - target| each

    @property
    def accuracy(self) -> float:
        scored = self.correct[self.warmup :]
        return sum(scored) / len(scored) if scored else math.nan

    @property
    def mae(self) -> float:
        scored = self.absolute_errors[self.warmup :]
        return sum(scored) / len(scored) if scored else math.nan

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == "classification" else "mae"

    @property
    def score(self) -> float:
        """Accuracy for a classifier, mean absolute error for a regressor."""
        return self.accuracy if self.task == "classification" else self.mae

    def summary(self) -> dict[str, Any]:
        return {
            self.metric: round(self.score, 6),
            "retrains": self.retrains,
            "promotions": self.promotions,
            "detection_delays": self.detection_delays,
            "false_alarms": self.false_alarms,
            "missed": self.missed,
            "detections": self.detections,
        }


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


class LabelArrivals:
    """When each example's label arrives: after ``delay`` more examples (``unit="examples"``, the delay's whole part)
    or once the stream's event time has passed the example's time plus ``delay`` seconds (``unit="seconds"``; event
    times in stream order). Seeded: every strategy sees the same delays."""

    def __init__(
        self,
        examples: Sequence[StreamExample],
        delay: LabelDelay,
        unit: Literal["examples", "seconds"] = "examples",
        seed: int = 0,
    ) -> None:
        self.delay = delay
        self.unit = unit
        self.seed = seed
        self._stamps = [_stamp(example, i).timestamp() for i, example in enumerate(examples)]

    def draws(self) -> Callable[[int], tuple[int, datetime]]:
        """A fresh, seeded sequence: example index -> (the position after which its label is seen, label time)."""
        rng = random.Random(f"label-delay:{self.seed}")
        stamps = self._stamps

        def arrival(index: int) -> tuple[int, datetime]:
            drawn = self.delay.sample(rng)
            if self.unit == "examples":
                at = index + int(drawn)
                seen = stamps[min(at, len(stamps) - 1)]
            else:
                seen = stamps[index] + drawn
                at = max(index, bisect.bisect_right(stamps, seen, lo=index) - 1)
                at = at if at < len(stamps) - 1 or seen <= stamps[-1] else len(stamps)  # after the stream's end
            return at, datetime.fromtimestamp(seen, UTC)

        return arrival


def _stamp(example: StreamExample, index: int) -> datetime:
    return example.timestamp or EPOCH + index * SPACING


def simulate(
    examples: Sequence[StreamExample],
    strategy: Strategy,
    trainer: TrainerSetup,
    *,
    task: Task = "classification",
    drift_points: Sequence[int] = (),
    fallback_prediction: Any = 0,
    initial: int | None = None,
    model_id: str = "evaluated",
    on_example: Callable[[LabeledExample], None] | None = None,
    labels: LabelArrivals | None = None,
) -> StrategyResult:
    """Run one strategy over the stream, as the scorer, detector and trainer would.

    ``initial``: every strategy's first model is fitted on the first ``initial`` examples (the cold start), and
    accuracy counts from there on; by default, the policy's cold start. ``labels``: when labels arrive (right
    after their prediction by default); labels due after the stream's end are never seen.
    """
    policy = strategy.policy if initial is None else replace(strategy.policy, cold_start_examples=initial)
    trainer = trainer if initial is None else replace(trainer, cold_start_min=initial)
    watch = ModelWatch(model_id, policy)
    buffer = ExampleBuffer(trainer.buffer_max_examples, trainer.buffer_max_age_s)
    result = StrategyResult(strategy.name, bytearray(), policy.cold_start_examples, task=task)
    champion: FittedModel | None = None
    predictions: list[Any] = []
    predicted_from = 0
    oracle_points = sorted(drift_points) if strategy.oracle else []
    pending: RetrainEvent | None = None
    arrival = labels.draws() if labels is not None else None
    waiting: list[tuple[int, int, Any, int, datetime]] = []  # (seen after, index, prediction, version, label time)
    for index, example in enumerate(examples):
        if index - predicted_from >= len(predictions):
            predicted_from = index
            predictions = _predict(champion, examples[index : index + PREDICT_BATCH], fallback_prediction)
        prediction = predictions[index - predicted_from]
        error = example_error(prediction, example.target, task)
        if task == "classification":
            result.correct.append(error == 0.0)
        else:
            result.absolute_errors.append(error)
        stamp = _stamp(example, index)
        if arrival is None:
            arrived = [(index, prediction, result.promotions, stamp)]
        else:
            at, label_time = arrival(index)
            heapq.heappush(waiting, (at, index, prediction, result.promotions, label_time))
            arrived = []
            while waiting and waiting[0][0] <= index:
                _, labeled_index, labeled_prediction, version, label_time = heapq.heappop(waiting)
                arrived.append((labeled_index, labeled_prediction, version, label_time))
        for labeled_index, labeled_prediction, version, label_time in arrived:
            labeled_example = examples[labeled_index]
            labeled = LabeledExample.model_construct(
                schema_version=1,
                prediction_id=f"{model_id}-{labeled_index}",
                model_id=model_id,
                model_version=version,  # the version that served the prediction: one per promotion
                features=labeled_example.features,
                prediction=labeled_prediction,
                label=labeled_example.target,
                prediction_timestamp=_stamp(labeled_example, labeled_index),
                label_timestamp=label_time,
            )
            buffer.add(labeled)
            if on_example is not None:
                on_example(labeled)  # what the detector would join, in its order
            # Where a detection happened: the watch's own count, which is the stream's position when labels
            # come at once; with delays, the example being served when the late label was seen.
            delayed = arrival is not None
            if oracle_points and oracle_points[0] == labeled_index:
                oracle_points.pop(0)
                opened = watch.open_episode(change_at=watch.position)  # the drift example is observed next
                result.detections.append(index if delayed else opened.detected_at)
            event = watch.observe(labeled)
            if watch.opened is not None and watch.opened.reason is not RetrainReason.DATA_VOLUME:  # not the cold start
                result.detections.append(index if delayed else watch.opened.detected_at)
            elif event is not None and not policy.post_change_training and event.reason in _DEGRADATION:
                result.detections.append(index)  # a naive trigger: its event is its detection
            if event is not None:
                pending = event  # the trainer coalesces: the newest event of a model stands for the others
            if pending is None or not _ready(pending, champion, buffer, trainer):
                continue
            buffered = buffer.examples()
            window = choose_window(buffered, pending, trainer.config)
            result.events.append((index, pending.reason.value, len(window)))
            wider = buffered[-trainer.config.default_window :]
            evidence = needs_evidence(pending)
            pending, (fitted, accuracy) = None, _fit(window, wider, trainer, task, champion, result, evidence)
            if fitted is not None:
                champion = fitted
                result.promotions += 1
                result.swaps.append(index + 1)
                watch.model_updated(result.promotions, accuracy)  # what the detector reads in the ModelUpdatedEvent
                predictions, predicted_from = [], index + 1
    result.detection_delays, result.false_alarms, result.missed = score_detections(result.detections, drift_points)
    return result


def _ready(event: RetrainEvent, champion: FittedModel | None, buffer: ExampleBuffer, trainer: TrainerSetup) -> bool:
    """The trainer's rule: a cold start waits for ``cold_start_min`` buffered examples."""
    if champion is None and event.reason is RetrainReason.DATA_VOLUME:
        return len(buffer) >= trainer.cold_start_min
    return True


def _fit(
    window: list[LabeledExample],
    wider: list[LabeledExample],
    trainer: TrainerSetup,
    task: Task,
    champion: FittedModel | None,
    result: StrategyResult,
    evidence: bool,
) -> tuple[FittedModel | None, float | None]:
    """The promoted challenger and its validation accuracy, or (None, None) when the champion stays."""
    if champion is not None:
        result.retrains += 1  # the first fit is the initial model, not a retrain
    try:
        outcome = train_challenger(window, trainer.factory, task, trainer.config, champion, wider, evidence)
    except TrainingFailure:
        result.failures += 1
        return None, None
    return (outcome.challenger, outcome.metrics.get("accuracy")) if outcome.promote else (None, None)


def _predict(model: FittedModel | None, batch: Sequence[StreamExample], fallback: Any) -> list[Any]:
    if model is None:
        return [fallback] * len(batch)
    return model.predict([example.features for example in batch])


def score_detections(detections: Sequence[int], drift_points: Sequence[int]) -> tuple[list[int], int, int]:
    """(delays, false alarms, missed drifts): a detection's delay counts from the latest drift point before it.

    The first detection after a drift point and before the next one detects it; every other detection (before
    any drift, or a second one in the same segment) is a false alarm. Without drift points there is nothing to
    score.
    """
    if not drift_points:
        return [], 0, 0
    points = sorted(drift_points)
    delays, false_alarms, found = [], 0, set()
    for position in detections:
        segment = bisect.bisect_right(points, position) - 1
        if segment < 0 or segment in found:
            false_alarms += 1
            continue
        found.add(segment)
        delays.append(position - points[segment])
    return delays, false_alarms, len(points) - len(found)


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
