"""One strategy over one stream, offline, with the services' own decision code (see :mod:`retrain.evaluate`).

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

from retrain.decisions.drift import Task, example_error
from retrain.decisions.policy import ModelWatch, PolicyConfig
from retrain.decisions.scoring import ServedModel, score_batch
from retrain.decisions.training import (
    EstimatorFactory,
    ExampleBuffer,
    FitPlan,
    FittedModel,
    TrainingConfig,
    TrainingFailure,
    TrainingOutcome,
    plan_fit,
    ready_to_fit,
    train_challenger,
)
from retrain.schemas import LabeledExample, RetrainEvent, RetrainReason
from retrain.schemas.types import FeatureValue

if TYPE_CHECKING:
    from retrain.producers.replay import LabelDelay

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
    run = _Simulation(examples, strategy, policy, trainer, task, fallback_prediction, model_id, on_example, labels)
    run.oracle_points = sorted(drift_points) if strategy.oracle else []
    for index, example in enumerate(examples):
        prediction = run.serve(index)
        error = example_error(prediction, example.target, task)
        if task == "classification":
            run.result.correct.append(error == 0.0)
        else:
            run.result.absolute_errors.append(error)
        for labeled_index, labeled_prediction, version, label_time in run.arrived(index, prediction):
            run.learn(index, labeled_index, labeled_prediction, version, label_time)
    result = run.result
    result.detection_delays, result.false_alarms, result.missed = score_detections(result.detections, drift_points)
    return result


class _Simulation:
    """One strategy's run: the scorer's champion, the detector's watch, the trainer's buffer and pending event."""

    def __init__(
        self,
        examples: Sequence[StreamExample],
        strategy: Strategy,
        policy: PolicyConfig,
        trainer: TrainerSetup,
        task: Task,
        fallback_prediction: Any,
        model_id: str,
        on_example: Callable[[LabeledExample], None] | None,
        labels: LabelArrivals | None,
    ) -> None:
        self.examples, self.policy, self.trainer, self.task = examples, policy, trainer, task
        self.fallback_prediction, self.model_id, self.on_example = fallback_prediction, model_id, on_example
        self.watch = ModelWatch(model_id, policy)
        self.buffer = ExampleBuffer(trainer.buffer_max_examples, trainer.buffer_max_age_s)
        self.result = StrategyResult(strategy.name, bytearray(), policy.cold_start_examples, task=task)
        self.champion: FittedModel | None = None
        self.predictions: list[Any] = []
        self.predicted_from = 0
        self.oracle_points: list[int] = []
        self.pending: RetrainEvent | None = None
        self.arrival = labels.draws() if labels is not None else None
        self.waiting: list[tuple[int, int, Any, int, datetime]] = []  # (seen after, index, prediction, version, time)

    def serve(self, index: int) -> Any:
        """The champion's prediction for example ``index`` (predicted in batches, again after each swap)."""
        if index - self.predicted_from >= len(self.predictions):
            self.predicted_from = index
            batch = self.examples[index : index + PREDICT_BATCH]
            self.predictions = _predict(self.champion, batch, self.fallback_prediction)
        return self.predictions[index - self.predicted_from]

    def arrived(self, index: int, prediction: Any) -> list[tuple[int, Any, int, datetime]]:
        """The labels seen once example ``index`` is served: (index, prediction, version, label time) each."""
        if self.arrival is None:
            return [(index, prediction, self.result.promotions, _stamp(self.examples[index], index))]
        at, label_time = self.arrival(index)
        heapq.heappush(self.waiting, (at, index, prediction, self.result.promotions, label_time))
        arrived = []
        while self.waiting and self.waiting[0][0] <= index:
            _, labeled_index, labeled_prediction, version, label_time = heapq.heappop(self.waiting)
            arrived.append((labeled_index, labeled_prediction, version, label_time))
        return arrived

    def learn(self, index: int, labeled_index: int, prediction: Any, version: int, label_time: datetime) -> None:
        """A label arrives: the detector observes the joined example; the trainer fits when an event is due."""
        example = self.examples[labeled_index]
        labeled = LabeledExample.model_construct(
            schema_version=1,
            prediction_id=f"{self.model_id}-{labeled_index}",
            model_id=self.model_id,
            model_version=version,  # the version that served the prediction: one per promotion
            features=example.features,
            prediction=prediction,
            label=example.target,
            prediction_timestamp=_stamp(example, labeled_index),
            label_timestamp=label_time,
        )
        self.buffer.add(labeled)
        if self.on_example is not None:
            self.on_example(labeled)  # what the detector would join, in its order
        event = self._observe(labeled, index, labeled_index)
        if event is not None:
            self.pending = event  # the trainer coalesces: the newest event of a model stands for the others
        self._fit_if_ready(index)

    def _observe(self, labeled: LabeledExample, index: int, labeled_index: int) -> RetrainEvent | None:
        """The watch's decision, and where a detection happened: the watch's own count, which is the stream's
        position when labels come at once; with delays, the example being served when the late label was seen."""
        watch, result = self.watch, self.result
        delayed = self.arrival is not None
        if self.oracle_points and self.oracle_points[0] == labeled_index:
            self.oracle_points.pop(0)
            opened = watch.open_episode(change_at=watch.position)  # the drift example is observed next
            result.detections.append(index if delayed else opened.detected_at)
        event = watch.observe(labeled)
        if watch.opened is not None and watch.opened.reason is not RetrainReason.DATA_VOLUME:  # not the cold start
            result.detections.append(index if delayed else watch.opened.detected_at)
        elif event is not None and not self.policy.post_change_training and event.reason in _DEGRADATION:
            result.detections.append(index)  # a naive trigger: its event is its detection
        return event

    def _fit_if_ready(self, index: int) -> None:
        pending, trainer = self.pending, self.trainer
        if pending is None or not ready_to_fit(
            pending, self.champion is not None, len(self.buffer), trainer.cold_start_min
        ):
            return
        plan = plan_fit(self.buffer.examples(), pending, trainer.config)
        self.result.events.append((index, pending.reason.value, len(plan.window)))
        self.pending = None
        outcome = _fit(plan, trainer, self.task, self.champion, self.result)
        if outcome is not None:
            self.champion = outcome.challenger
            self.result.promotions += 1
            self.result.swaps.append(index + 1)
            # what the detector reads in the model-updated event
            self.watch.model_updated(self.result.promotions, outcome.metrics.get("accuracy"), outcome.n_holdout)
            self.predictions, self.predicted_from = [], index + 1


def _fit(
    plan: FitPlan, trainer: TrainerSetup, task: Task, champion: FittedModel | None, result: StrategyResult
) -> TrainingOutcome | None:
    """The outcome of a fit whose challenger is promoted, or None when the champion stays."""
    if champion is not None:
        result.retrains += 1  # the first fit is the initial model, not a retrain
    try:
        outcome = train_challenger(
            plan.window, trainer.factory, task, trainer.config, champion, plan.wider, plan.evidence
        )
    except TrainingFailure:
        result.failures += 1
        return None
    return outcome if outcome.promote else None


def _predict(model: FittedModel | None, batch: Sequence[StreamExample], fallback: Any) -> list[Any]:
    """The scorer's answers: the fallback before the first version, the model's predictions after."""
    served = ServedModel("evaluated", 0 if model is None else 1, model)
    return [row.prediction for row in score_batch(served, [example.features for example in batch], fallback)]


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
