"""The trainer service's buffers, estimators, training windows and promotion rule: ``RETRAIN_TRAINER_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class TrainerSettings(BaseSettings):
    """The trainer service: buffers, estimator, training window, promotion."""

    model_config = env_config("RETRAIN_TRAINER_")

    group_id: str = Field(default="retrain-trainer", description="Consumer group of the trainer instances.")
    estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingClassifier",
        description="Import path of the classifier fitted for every model not configured otherwise.",
    )
    estimator_params: str = Field(
        default='{"early_stopping": true, "random_state": 0}', description="JSON keyword arguments of `estimator`."
    )
    estimator_variants: str = Field(
        default="auto",
        description="JSON list of parameter sets, each overriding some of `estimator_params`: every fit is made once "
        "per set as well, and the holdout chooses. `auto`: a simpler tree for scikit-learn's HistGradientBoosting "
        '(`[{"max_leaf_nodes": 15}]`, which wins on small or drifting windows), none for other estimators.',
    )
    regression_estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingRegressor",
        description="Import path of the regressor fitted for the models in `regression_models`.",
    )
    regression_estimator_params: str = Field(
        default='{"random_state": 0}', description="JSON keyword arguments of `regression_estimator`."
    )
    # JSON: {"<model_id>": {"estimator": "pkg.mod.Class" or "pkg.mod:factory", "params": {...}}}
    model_estimators: str = Field(
        default="{}",
        description='JSON, per model: `{"<model_id>": {"estimator": "pkg.mod.Class" or "pkg.mod:factory", '
        '"params": {...}}}`; a factory may return a pipeline.',
    )
    regression_models: str = Field(default="", description="Comma-separated model ids")
    min_window: int = Field(
        default=200, ge=1, description="A retrain event's suggested window is clamped to at least this."
    )
    max_window: int = Field(default=50_000, ge=1, description="… and to at most this many examples.")
    default_window: int = Field(
        default=5_000,
        ge=1,
        description="The latest this many examples when an event suggests no window; also a second candidate's "
        "window when the suggested one is shorter or longer (the holdout chooses).",
    )
    change_weight: float = Field(
        default=3.0,
        ge=1,
        description="When a retrain's window (the examples since a change) is shorter than `default_window`, one "
        "more candidate is fitted on the `default_window` with the window's examples weighted this many times the "
        "older ones (the holdout chooses; estimators whose `fit` takes `sample_weight`). 1: off.",
    )
    holdout_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="The window's most recent share, held out to score the champion and the challenger.",
    )
    min_holdout: int = Field(default=50, ge=1, description="Holdout examples at least.")
    min_train: int = Field(
        default=100, ge=1, description="A fit fails with fewer examples than this left after the holdout."
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="A challenger replacing a stale champion needs at least the champion's holdout score minus this.",
    )
    # A challenger for a champion not known to be stale must win a one-sided paired test at this level.
    promotion_alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="A challenger for a champion not known to be stale must win a one-sided paired test on the "
        "holdout at this level, its p-value multiplied by the number of fits the holdout chose it from.",
    )
    buffer_max_examples: int = Field(
        default=100_000, ge=1, description="Labeled examples buffered per model (the newest are kept)."
    )
    buffer_max_age_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="Buffered examples older than this, in label time, are dropped."
    )
    cold_start_min: int = Field(
        default=1_000, ge=1, description="A model with no version trains version 1 once its buffer holds this many."
    )
    # Threads per fit (OpenMP/BLAS); unset = the libraries' default (all cores).
    fit_threads: int | None = Field(default=1, ge=1, description="OpenMP/BLAS threads of each fit.")
    # Worker processes that fit challengers while the consume loop goes on; one fit per model at a time.
    fit_workers: int = Field(
        default=1,
        ge=1,
        description="Worker processes that fit challengers while the consume loop goes on; one fit per model at a "
        "time.",
    )
    # A fit still running after this is killed and answered as failed (the champion stays).
    fit_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="A fit still running after this is killed and answered as failed (`fit_timeout`); the champion "
        "stays.",
    )
    max_poll_interval_ms: int = Field(
        default=30 * 60 * 1000,
        ge=10_000,
        description="The trainer's consumer leaves its group when it does not poll within this.",
    )

    @property
    def regression_model_ids(self) -> frozenset[str]:
        return frozenset(model.strip() for model in self.regression_models.split(",") if model.strip())
