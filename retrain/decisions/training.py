"""What to train on, how to train, and whether the challenger replaces the champion. Pure Python, no Kafka.

The trainer keeps an :class:`ExampleBuffer` per model (bounded by count and by age), takes the window a retrain
event suggests (clamped to a configured minimum and maximum), holds out the most recent slice, fits a
challenger, scores champion and challenger on the same holdout, and promotes when the challenger is at least as
good as the champion minus a tolerance — or when there is no champion.
"""

from __future__ import annotations

import importlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.utils.validation import has_fit_parameter

from retrain.decisions.drift import Task, example_error
from retrain.decisions.episode import STALE
from retrain.decisions.features import MAX_CATEGORIES, FeatureEncoding, Row
from retrain.schemas import LabeledExample, RetrainEvent, RetrainReason


@dataclass(frozen=True)
class TrainingConfig:
    min_window: int = 200
    max_window: int = 50_000
    default_window: int = 10_000
    holdout_fraction: float = 0.2
    min_holdout: int = 50
    min_train: int = 100
    tolerance: float = 0.0  # promote when challenger >= champion - tolerance (scores: higher is better)
    # When the champion is not known to be stale, the challenger must be better on the holdout with a one-sided
    # paired sign test (McNemar's, for 0/1 errors) p-value at most this, once multiplied by the number of fits the
    # holdout chose the challenger from (Bonferroni: the best of several fits wins by luck more often than one).
    evidence_alpha: float = 0.05
    # A window shorter than default_window (the examples since a change) also gets a candidate on default_window
    # with its own examples weighted this many times the older ones: the old concept's examples still help the
    # parts of the feature space the change left alone. 1: no such candidate.
    change_weight: float = 3.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_window <= self.max_window:
            raise ValueError("need 1 <= min_window <= max_window")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError("holdout_fraction must be between 0 and 1")
        if self.tolerance < 0 or not math.isfinite(self.tolerance):
            raise ValueError("tolerance must be a finite number >= 0")
        if not 0 < self.evidence_alpha < 1:
            raise ValueError("evidence_alpha must be between 0 and 1")
        if not 1 <= self.change_weight < math.inf:
            raise ValueError("change_weight must be a finite number >= 1")


class TrainingFailure(Exception):
    """No challenger could be trained; ``reason`` is a short code for the ModelUpdatedEvent."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple:
        return TrainingFailure, (self.reason, str(self))


class ExampleBuffer:
    """The most recent labeled examples of one model, bounded by count and by age (label time)."""

    def __init__(self, max_examples: int = 100_000, max_age_s: float = 7 * 24 * 3600.0) -> None:
        if max_examples < 1 or max_age_s <= 0:
            raise ValueError("max_examples must be >= 1 and max_age_s > 0")
        self.max_age_s = max_age_s
        self._examples: deque[LabeledExample] = deque(maxlen=max_examples)
        self._ids: set[str] = set()

    def add(self, example: LabeledExample) -> bool:
        """Keep ``example``; False if the same prediction was already there (a redelivered record)."""
        if example.prediction_id in self._ids:
            return False
        if len(self._examples) == self._examples.maxlen:
            self._ids.discard(self._examples[0].prediction_id)
        self._examples.append(example)
        self._ids.add(example.prediction_id)
        newest = example.label_timestamp.timestamp()
        while self._examples and newest - self._examples[0].label_timestamp.timestamp() > self.max_age_s:
            self._ids.discard(self._examples.popleft().prediction_id)
        return True

    def __len__(self) -> int:
        return len(self._examples)

    def examples(self) -> list[LabeledExample]:
        return list(self._examples)


def choose_window(
    examples: Sequence[LabeledExample], event: RetrainEvent | None, config: TrainingConfig
) -> list[LabeledExample]:
    """The event's suggested window (clamped to [min_window, max_window]), else the latest default_window."""
    suggestion = event.suggested_window if event is not None else None
    chosen = list(examples)
    if suggestion is not None and suggestion.start is not None:
        start, end = suggestion.start, suggestion.end
        chosen = [e for e in chosen if e.label_timestamp >= start and (end is None or e.label_timestamp <= end)]
    wanted = suggestion.last_n if suggestion is not None and suggestion.last_n is not None else None
    if wanted is None:
        wanted = config.default_window if suggestion is None else len(chosen)
    wanted = max(config.min_window, min(config.max_window, wanted))
    if len(chosen) < wanted and suggestion is not None and suggestion.start is not None:
        chosen = list(examples)  # the time range is too small: widen to the minimum from the latest examples
    return chosen[-wanted:]


@dataclass(frozen=True)
class FitPlan:
    """What one retrain fits on: the event's window, the latest ``default_window`` as a second candidate, and
    whether the challenger must beat the champion beyond noise (see :func:`train_challenger`)."""

    window: list[LabeledExample]
    wider: list[LabeledExample]
    evidence: bool


def plan_fit(buffered: Sequence[LabeledExample], event: RetrainEvent, config: TrainingConfig) -> FitPlan:
    """The trainer's step for the newest retrain event of a model, shared by the service and ``retrain evaluate``."""
    return FitPlan(
        window=choose_window(buffered, event, config),
        wider=list(buffered[-config.default_window :]),
        evidence=needs_evidence(event),
    )


def ready_to_fit(event: RetrainEvent, has_champion: bool, buffered: int, cold_start_min: int) -> bool:
    """A cold start (no champion, a data-volume event) waits for ``cold_start_min`` buffered examples."""
    if not has_champion and event.reason is RetrainReason.DATA_VOLUME:
        return buffered >= cold_start_min
    return True


def split_holdout(
    examples: Sequence[LabeledExample], config: TrainingConfig
) -> tuple[list[LabeledExample], list[LabeledExample]]:
    """Train on the older part, validate on the most recent slice (never the other way round)."""
    holdout = max(config.min_holdout, int(len(examples) * config.holdout_fraction))
    if len(examples) - holdout < config.min_train:
        raise TrainingFailure(
            "too_few_examples",
            f"{len(examples)} examples leave fewer than {config.min_train} to train on after a holdout of {holdout}",
        )
    return list(examples[:-holdout]), list(examples[-holdout:])


@dataclass
class FittedModel:
    """An estimator with the encoding of its features (order, types, category vocabularies) fixed at fit time:
    what the registry stores and the scorer loads."""

    estimator: Any
    feature_names: list[str]
    task: Task
    encoding: FeatureEncoding | None = None  # None: a version fitted before categories, all numbers

    @property
    def features(self) -> FeatureEncoding:
        return self.encoding if self.encoding is not None else FeatureEncoding.numeric(self.feature_names)

    def matrix(self, rows: Sequence[Row]) -> np.ndarray:
        return np.asarray(self.features.encode(rows).matrix, dtype=float)

    def predict(self, rows: Sequence[Row]) -> list[Any]:
        return self.predict_encoded(rows)[0]

    def predict_encoded(self, rows: Sequence[Row]) -> tuple[list[Any], list[tuple[int, str]]]:
        """The predictions, and the (row, feature) values scored as missing because their type was not the
        one the version was trained on."""
        encoded = self.features.encode(rows)
        matrix = np.asarray(encoded.matrix, dtype=float)
        return [_plain(value) for value in self.estimator.predict(matrix)], encoded.mistyped

    def errors(self, examples: Sequence[LabeledExample]) -> list[float]:
        """Each example's error: 0/1 for a classifier, the absolute error for a regressor."""
        predictions = self.predict([e.features for e in examples])
        return [example_error(p, e.label, self.task) for p, e in zip(predictions, examples, strict=True)]

    def score(self, examples: Sequence[LabeledExample]) -> float:
        """Accuracy for a classifier, minus the mean absolute error for a regressor: higher is better."""
        return score_of(self.errors(examples), self.task)


def score_of(errors: Sequence[float], task: Task) -> float:
    mean_error = sum(errors) / len(errors)
    return 1.0 - mean_error if task == "classification" else -mean_error


def _plain(value: Any) -> Any:
    """numpy scalars -> the JSON types labels arrive in (so 1 == 1 and "UP" == "UP" in example_error)."""
    return value.item() if hasattr(value, "item") else value


EstimatorFactory = Callable[[], Any]


@dataclass(frozen=True)
class Estimator:
    """A new estimator on each call: ``spec`` (``package.module.Class`` or ``package.module:function``) with
    ``params``. Picklable, so a fit worker process builds the same estimator."""

    spec: str
    params: tuple[tuple[str, Any], ...] = ()
    # Parameter sets fitted besides ``params`` at every fit, each overriding some of them; the holdout chooses.
    variants: tuple[tuple[tuple[str, Any], ...], ...] = ()

    def target(self) -> Callable[..., Any]:
        module_name, sep, attribute = self.spec.partition(":")
        if not sep:
            module_name, _, attribute = self.spec.rpartition(".")
        if not module_name or not attribute:
            raise ValueError(
                f"estimator {self.spec!r} must look like sklearn.ensemble.RandomForestClassifier or pkg.mod:make"
            )
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import estimator {self.spec!r}: {error}") from error
        if not callable(target):
            raise ValueError(f"estimator {self.spec!r} is not callable")
        return target

    def __call__(self) -> Any:
        return self.target()(**dict(self.params))

    def alternatives(self) -> list[Estimator]:
        """This estimator, then one per variant that changes its parameters, in order."""
        found = [Estimator(self.spec, self.params)]
        for variant in self.variants:
            params = tuple(sorted({**dict(self.params), **dict(variant)}.items()))
            if all(params != other.params for other in found):
                found.append(Estimator(self.spec, params))
        return found


def estimator_factory(
    spec: str, params: dict[str, Any] | None = None, variants: Sequence[dict[str, Any]] = ()
) -> Estimator:
    """``package.module.Class`` (a scikit-learn estimator, built with ``params``) or ``package.module:function``;
    each of ``variants`` overrides some of ``params`` for a second fit on the same window (the holdout chooses)."""
    estimator = Estimator(
        spec, tuple(sorted((params or {}).items())), tuple(tuple(sorted(v.items())) for v in variants)
    )
    estimator.target()  # a wrong spec fails here, at configuration, not at the first fit
    for alternative in estimator.alternatives()[1:]:
        try:  # likewise a variant's parameter the estimator does not take
            alternative()
        except TypeError as error:
            raise ValueError(f"estimator {spec!r} with {dict(alternative.params)}: {error}") from error
    return estimator


@dataclass
class TrainingOutcome:
    challenger: FittedModel
    challenger_score: float
    champion_score: float | None
    n_train: int
    n_holdout: int
    promote: bool
    p_value: float | None = None  # the paired test's, adjusted for `fits`, when the promotion asked for evidence
    variant: int | None = None  # which parameter set won (0: the estimator's own), when it had variants
    change_weighted: bool | None = None  # whether the change-weighted candidate won, when there was one
    fits: int = 1  # the fits the holdout chose the challenger from (windows x parameter sets)

    @property
    def metrics(self) -> dict[str, float]:
        name = "accuracy" if self.challenger.task == "classification" else "neg_mae"
        metrics = {name: self.challenger_score, "n_train": float(self.n_train), "n_holdout": float(self.n_holdout)}
        if self.champion_score is not None:
            metrics[f"champion_{name}"] = self.champion_score
        if self.p_value is not None:
            metrics["promotion_p_value"] = self.p_value
            metrics["promotion_fits"] = float(self.fits)
        if self.variant is not None:
            metrics["estimator_variant"] = float(self.variant)
        if self.change_weighted is not None:
            metrics["change_weighted"] = float(self.change_weighted)
        return metrics


def should_promote(challenger_score: float, champion_score: float | None, tolerance: float) -> bool:
    return champion_score is None or challenger_score >= champion_score - tolerance


def rejection(outcome: TrainingOutcome, config: TrainingConfig) -> str:
    """Why a challenger was not promoted, for the model-updated event."""
    scores = f"challenger {outcome.challenger_score:.4f}, champion {outcome.champion_score:.4f}"
    if outcome.p_value is not None:
        return (
            f"{scores} on {outcome.n_holdout} holdout examples: not better beyond noise "
            f"(one-sided paired test p={outcome.p_value:.3g} > {config.evidence_alpha}, "
            f"adjusted for the best of {outcome.fits} fits)"
        )
    return f"{scores}: challenger below champion - tolerance {config.tolerance}"


def needs_evidence(event: RetrainEvent | None) -> bool:
    """Whether the event leaves the champion presumed good: then a challenger must beat it beyond noise."""
    return event is not None and event.evidence.values.get(STALE) == 0.0


def better_p_value(challenger_errors: Sequence[float], champion_errors: Sequence[float]) -> float:
    """One-sided paired sign test on the same holdout examples (McNemar's exact test for 0/1 errors): the
    probability of the challenger winning at least this many of the examples where the two differ, were neither
    better. 1.0 when they never differ."""
    wins = sum(1 for a, b in zip(challenger_errors, champion_errors, strict=True) if a < b)
    losses = sum(1 for a, b in zip(challenger_errors, champion_errors, strict=True) if a > b)
    differing = wins + losses
    if differing == 0:
        return 1.0
    # P(X >= wins) for X ~ Binomial(differing, 1/2), summed in log space (differing can be thousands).
    log_half = differing * math.log(0.5)
    terms = [
        math.lgamma(differing + 1) - math.lgamma(k + 1) - math.lgamma(differing - k + 1) + log_half
        for k in range(wins, differing + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def train_challenger(
    window: Sequence[LabeledExample],
    factory: EstimatorFactory,
    task: Task,
    config: TrainingConfig,
    champion: FittedModel | None = None,
    wider: Sequence[LabeledExample] | None = None,
    evidence: bool = False,
) -> TrainingOutcome:
    """Fit a challenger on ``window`` minus its holdout; score it and the champion on that holdout.

    ``evidence`` (see :func:`needs_evidence`): the champion is not known to be stale, so the challenger replaces it
    only when it is better on the holdout beyond noise (``config.evidence_alpha``, with the p-value multiplied by
    the number of fits the holdout chose among); otherwise a tie is enough.

    ``wider``: a longer window ending with the same examples (the latest ``default_window``). A second candidate
    is fitted on it (minus the same holdout) and kept if it scores better: after a change, the examples since
    the change are usually the right window, but when the "change" was a passing fluctuation more data wins,
    and the holdout decides which. A third candidate on ``wider`` weighs ``window``'s training examples
    ``config.change_weight`` times the older ones: between the two when the change left part of the old concept
    intact, or drifts on. Likewise a window longer than ``default_window`` gets a second candidate on
    its latest ``default_window`` training examples: all of it wins on a stable stream, the recent part on a
    drifting one. An :class:`Estimator` with variants is fitted once per parameter set on each of these; the
    holdout chooses among all the fits (a tie keeps the earlier: ``window``'s own training part, the estimator's own
    parameters).
    """
    train, holdout = split_holdout(window, config)
    makers: list[EstimatorFactory] = [*factory.alternatives()] if isinstance(factory, Estimator) else [factory]
    candidates: list[tuple[list[LabeledExample], list[float] | None]] = [(train, None)]
    if wider is not None and len(wider) > len(window):
        held = {e.prediction_id for e in holdout}
        longer = [e for e in wider if e.prediction_id not in held]
        candidates.append((longer, None))
        if config.change_weight > 1 and all(_takes_sample_weight(make) for make in makers):
            recent = {e.prediction_id for e in train}
            candidates.append((longer, [config.change_weight if e.prediction_id in recent else 1.0 for e in longer]))
    elif len(train) > config.default_window:
        candidates.append((train[-config.default_window :], None))  # a long window: its recent part, if it drifted
    best: tuple[FittedModel, list[float], int, int, bool] | None = None
    for examples, weights in candidates:
        for variant, make in enumerate(makers):
            challenger, errors = _fit_and_score(examples, holdout, make, task, weights)
            if best is None or score_of(errors, task) > score_of(best[1], task):  # a tie keeps the earlier
                best = (challenger, errors, len(examples), variant, weights is not None)
    assert best is not None
    challenger, challenger_errors, n_train, chosen, weighted = best
    variant = chosen if len(makers) > 1 else None
    # Whether the change-weighted candidate won, when there was one.
    change_weighted = weighted if any(weights is not None for _, weights in candidates) else None
    challenger_score = score_of(challenger_errors, task)
    fits = len(candidates) * len(makers)
    champion_score, p_value, promote = None, None, True  # no champion: the first version goes in
    if champion is not None:
        champion_errors = champion.errors(holdout)
        champion_score = score_of(champion_errors, task)
        if evidence:
            p_value = min(1.0, better_p_value(challenger_errors, champion_errors) * fits)
            promote = p_value <= config.evidence_alpha
        else:
            promote = should_promote(challenger_score, champion_score, config.tolerance)
    return TrainingOutcome(
        challenger,
        challenger_score,
        champion_score,
        n_train,
        len(holdout),
        promote,
        p_value,
        variant,
        change_weighted,
        fits,
    )


def _fit_and_score(
    train: Sequence[LabeledExample],
    holdout: Sequence[LabeledExample],
    factory: EstimatorFactory,
    task: Task,
    weights: Sequence[float] | None = None,
) -> tuple[FittedModel, list[float]]:
    labels = [e.label for e in train]
    if task == "classification" and len({(type(label), label) for label in labels}) < 2:
        raise TrainingFailure("single_class", f"all {len(train)} training examples have the label {labels[0]!r}")
    try:
        estimator = factory()
        rows = [e.features for e in train]
        encoding = FeatureEncoding.fit(rows, max_categories=_category_limit(estimator))
        _declare_categories(estimator, encoding)
        challenger = FittedModel(estimator, encoding.names, task, encoding)
        if weights is None:
            challenger.estimator.fit(challenger.matrix(rows), labels)
        else:
            challenger.estimator.fit(challenger.matrix(rows), labels, sample_weight=np.asarray(weights))
        return challenger, challenger.errors(holdout)
    except Exception as error:  # any estimator failure is an outcome, not a crash
        raise TrainingFailure("estimator_error", f"{type(error).__name__}: {error}") from error


def _takes_sample_weight(factory: EstimatorFactory) -> bool:
    """Whether the estimator's ``fit`` takes ``sample_weight`` (a pipeline's does not, by name)."""
    try:
        return has_fit_parameter(factory(), "sample_weight")
    except Exception:  # a factory that fails here fails its fit too, as a TrainingFailure
        return False


def _category_limit(estimator: Any) -> int:
    """At most max_bins - 1 codes (the vocabulary and "other") for an estimator that bins its features."""
    max_bins = _params(estimator).get("max_bins")
    return min(MAX_CATEGORIES, max_bins - 2) if isinstance(max_bins, int) and max_bins > 2 else MAX_CATEGORIES


def _declare_categories(estimator: Any, encoding: FeatureEncoding) -> None:
    """Tell an estimator with native category support (HistGradientBoosting*) which columns are categories,
    unless its configuration already says; any other estimator gets the category codes as numbers."""
    if not any(encoding.categorical):
        return
    if _params(estimator).get("categorical_features", False) in (None, "from_dtype"):
        estimator.set_params(categorical_features=np.array(encoding.categorical))


def _params(estimator: Any) -> dict[str, Any]:
    get_params = getattr(estimator, "get_params", None)
    return get_params(deep=False) if callable(get_params) else {}


def window_bounds(window: Sequence[LabeledExample]) -> tuple[datetime | None, datetime | None]:
    if not window:
        return None, None
    return window[0].label_timestamp, window[-1].label_timestamp
