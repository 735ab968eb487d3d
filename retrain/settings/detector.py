"""The detector service's join, drift detectors, retrain triggers and state stores: ``RETRAIN_DETECTOR_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings

from retrain.settings.environment import env_config


class DetectorSettings(BaseSettings):
    """The detector service: the join, the drift detectors and the retrain triggers."""

    model_config = env_config("RETRAIN_DETECTOR_")

    group_id: str = Field(default="retrain-detector", description="Consumer group of the detector instances.")
    # Snapshot each partition's detector state (signed with the registry's HMAC key) when its offsets are
    # committed, and restore it when the partition is assigned again. Off, or without a key, a restart or a
    # rebalance starts the partition's detectors afresh (its joins are still complete).
    state_snapshots: bool = Field(
        default=True,
        description="Snapshot each partition's detector state, signed with a key derived from "
        "`RETRAIN_REGISTRY_HMAC_KEY`, and restore it when the partition is assigned again. Off, or without the key, "
        "a restart starts the partition's detectors afresh (no join is lost).",
    )
    # A snapshot larger than this (hundreds of models in one partition) is written as several records; keep it
    # under the detector-state topic's max.message.bytes (Kafka's default: 1 MiB).
    snapshot_record_bytes: int = Field(
        default=512 * 1024,
        ge=1_024,
        le=64 * 1024 * 1024,
        description="A larger snapshot is written as chunks of this size and a manifest; keep it under the "
        "detector-state topic's `max.message.bytes`.",
    )
    # Models whose error is |y - y_hat| (regression); every other model is a classifier with a 0/1 error.
    regression_models: str = Field(default="", description="Comma-separated model ids")
    # JSON list of {"name": <River detector>, "params": {...}}; River's defaults where params are absent.
    detectors: str = Field(
        default='[{"name": "ADWIN", "params": {"delta": 0.01}}, {"name": "PageHinkley", "params": {"threshold": 100}}]',
        description='JSON list of River drift detectors on each model\'s error, each `{"name": ..., "params": {...}}`: '
        "ADWIN, PageHinkley, KSWIN, DDM, EDDM, HDDM_A, HDDM_W or FHDDM.",
    )
    drift_quorum: int = Field(
        default=1,
        ge=1,
        description="Detectors that must report a rising error within `agreement_window` examples for a `drift` "
        "retrain.",
    )
    agreement_window: int = Field(
        default=1_000, ge=1, description="Examples within which `drift_quorum` detectors must agree."
    )
    performance_window: int = Field(
        default=500,
        ge=1,
        description="Examples of the rolling accuracy or error that the `performance` trigger watches.",
    )
    min_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="`performance` retrain when the rolling accuracy falls below this (classification). Unset: none.",
    )
    max_error: float | None = Field(
        default=None,
        ge=0,
        description="`performance` retrain when the rolling mean absolute error rises above this (regression). "
        "Unset: none.",
    )
    relative_drop: float | None = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="`performance` retrain when the rolling accuracy falls below this x the accuracy the version had "
        "over its first live examples.",
    )
    volume_examples: int | None = Field(
        default=100_000,
        ge=1,
        description="`data_volume` retrain after this many labeled examples since the last model.",
    )
    cold_start_examples: int = Field(
        default=1_000,
        ge=1,
        description="A model with no version asks for its first (a `data_volume` retrain) after this many labeled "
        "examples.",
    )
    cooldown_examples: int = Field(
        default=10_000,
        ge=1,
        description="After a detection the model is quiet until a new version is promoted, or this many examples or "
        "`cooldown_s` pass.",
    )
    cooldown_s: float = Field(default=3_600.0, gt=0, description="The cooldown's limit in seconds of event time.")
    # Post-change training: after a drift, fits on the examples since the change point, the first once there are
    # refit_first of them, again as they grow x refit_growth, until refit_until (skipped once recovered).
    post_change_training: bool = Field(
        default=True,
        description="A `drift` or `performance` trigger opens an episode that fits on the examples since the estimated "
        "change point. Off: ask at once for the trainer's default window, the champion taken as stale.",
    )
    refit_first: int = Field(
        default=1_500, ge=1, description="An episode's first fit, once this many examples since the change exist."
    )
    refit_growth: float = Field(
        default=2.5, gt=1, description="Later fits of an episode as the post-change examples grow by this factor."
    )
    refit_until: int = Field(
        default=5_000, ge=1, description="An episode's last fit, at this many post-change examples."
    )
    recovered_margin: float | None = Field(
        default=0.02,
        ge=0,
        description="Skip an episode's later fits once the rolling error is within this of the error before the "
        "change.",
    )
    # A change is confident when the error rose by this many standard errors at its change point; otherwise a retrain
    # uses every example since the last confident change and must beat the champion beyond noise. None: always.
    confident_rise_z: float | None = Field(
        default=3.0,
        gt=0,
        description="A change is confident (the champion is stale) when the error after its change point exceeds the "
        "error before it by this many standard errors. Otherwise a retrain uses every example since the last confident "
        "change and must beat the champion beyond noise.",
    )
    validation_rise_z: float | None = Field(
        default=4.0,
        gt=0,
        description="A version whose error over its first `performance_window` served examples exceeds its validation "
        "error (the trainer's holdout) by this many standard errors was stale when it went into service: an episode "
        "opens at its first served example (classification).",
    )
    change_history: int = Field(
        default=10_000,
        ge=2,
        description="Errors kept per model, since its version went into service, to locate an episode's change point.",
    )
    # Label-free data drift: a detector per feature of the prediction stream (opt-in).
    feature_drift: bool = Field(
        default=False, description="Watch the prediction stream's features for drift, without labels (opt-in)."
    )
    feature_detector: str = Field(
        default='{"name": "ADWIN"}',
        description='JSON `{"name": ..., "params": {...}}`: the River detector of each number or boolean feature '
        "(category features get a chi-square test).",
    )
    feature_limit: int = Field(
        default=64, ge=1, le=1024, description="Features watched per model: the first this many names."
    )
    # Where the join's pending records (and, with snapshots, the detectors' state) live: rocksdb, a store per
    # partition on local disk backed by the compacted detector-changelog topic; memory, RAM only (commits then
    # wait for the oldest pending record, and a restart reads both topics again from there).
    state_store: Literal["rocksdb", "memory"] = Field(
        default="rocksdb",
        description="Where the join's pending records and the models' watches live: `rocksdb`, a store per partition "
        "on local disk backed by the detector-changelog topic; `memory`, RAM only (commits wait for the oldest "
        "pending record, and a restart reads both topics again from there).",
    )
    # The stores live under <state_dir>/<group_id>/<partition>; one directory per instance on a machine.
    state_dir: Path = Field(
        default=Path(".cache/state"),
        validation_alias=AliasChoices("RETRAIN_STATE_DIR", "RETRAIN_DETECTOR_STATE_DIR", "state_dir"),
        description="The state stores live under `<dir>/<group_id>/<partition>`; one directory per instance on a "
        "machine.",
    )
    prediction_ttl_s: float = Field(
        default=7 * 86_400.0, gt=0, description="How long a prediction waits for its label, in event time."
    )
    label_ttl_s: float = Field(
        default=600.0, gt=0, description="How long a label waits for its prediction, in event time."
    )
    # An event time further ahead of its record's timestamp (or of the clock) is refused: it would move the join's
    # watermark and expire every pending prediction it passes.
    max_event_time_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="A prediction or label dated further ahead of its record's timestamp (or of the clock) goes to "
        "dead-letters as `future_event_time`.",
    )
    # Pending records per partition, both sides; past it the oldest are evicted and counted. Default: 50,000,000
    # with the rocksdb store (disk), 1,000,000 in memory (RAM).
    max_pending: int | None = Field(
        default=None,
        ge=1,
        description="Records waiting in one partition's join, both sides; beyond it the oldest are evicted and "
        "counted. Unset: 50,000,000 with the `rocksdb` store, 1,000,000 in memory.",
    )
    max_poll_records: int = Field(default=1_000, ge=1, description="Records per poll batch.")

    @property
    def pending_cap(self) -> int:
        if self.max_pending is not None:
            return self.max_pending
        return 50_000_000 if self.state_store == "rocksdb" else 1_000_000

    @property
    def regression_model_ids(self) -> frozenset[str]:
        return frozenset(model.strip() for model in self.regression_models.split(",") if model.strip())
