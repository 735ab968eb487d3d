"""From settings to decision objects: the one place the services and ``retrain evaluate`` build their brains.

The detector's :class:`PolicyConfig`, the trainer's :class:`TrainingConfig` and estimator come from the same
environment variables through these functions, so an offline evaluation runs exactly what the services run.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from retrain.decisions.drift import DetectorSpec, Task
from retrain.decisions.policy import PolicyConfig
from retrain.decisions.training import EstimatorFactory, TrainingConfig, estimator_factory
from retrain.settings import DetectorSettings, TrainerSettings


def _detector_spec(item: dict) -> DetectorSpec:
    return DetectorSpec.of(item["name"], **item.get("params", {}))


def policy_config(settings: DetectorSettings, task: str) -> PolicyConfig:
    try:
        specs = tuple(_detector_spec(item) for item in json.loads(settings.detectors))
        feature_spec = _detector_spec(json.loads(settings.feature_detector)) if settings.feature_drift else None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            "RETRAIN_DETECTOR_DETECTORS must be a JSON list like "
            '[{"name": "ADWIN", "params": {"delta": 0.002}}] and RETRAIN_DETECTOR_FEATURE_DETECTOR one such '
            f"object: {error}"
        ) from error
    return PolicyConfig(
        task=task,  # type: ignore[arg-type]
        detectors=specs,
        drift_quorum=settings.drift_quorum,
        agreement_window=settings.agreement_window,
        performance_window=settings.performance_window,
        min_accuracy=settings.min_accuracy,
        max_error=settings.max_error,
        relative_drop=settings.relative_drop,
        volume_examples=settings.volume_examples,
        cold_start_examples=settings.cold_start_examples,
        cooldown_examples=settings.cooldown_examples,
        cooldown_s=settings.cooldown_s,
        post_change_training=settings.post_change_training,
        refit_first=settings.refit_first,
        refit_growth=settings.refit_growth,
        refit_until=settings.refit_until,
        recovered_margin=settings.recovered_margin,
        confident_rise_z=settings.confident_rise_z,
        validation_rise_z=settings.validation_rise_z,
        change_history=settings.change_history,
        feature_detector=feature_spec,
        feature_limit=settings.feature_limit,
    )


def training_config(settings: TrainerSettings) -> TrainingConfig:
    return TrainingConfig(
        min_window=settings.min_window,
        max_window=settings.max_window,
        default_window=settings.default_window,
        holdout_fraction=settings.holdout_fraction,
        min_holdout=settings.min_holdout,
        min_train=settings.min_train,
        tolerance=settings.tolerance,
        evidence_alpha=settings.promotion_alpha,
        change_weight=settings.change_weight,
    )


def estimator_choice(settings: TrainerSettings) -> Callable[[str, Task], EstimatorFactory]:
    """The estimator of each model: its override in RETRAIN_TRAINER_MODEL_ESTIMATORS, else the task's default."""
    try:
        overrides = json.loads(settings.model_estimators)
        defaults = {
            "classification": estimator_factory(
                settings.estimator, json.loads(settings.estimator_params), estimator_variants(settings)
            ),
            "regression": estimator_factory(
                settings.regression_estimator, json.loads(settings.regression_estimator_params)
            ),
        }
        per_model = {
            model_id: estimator_factory(choice["estimator"], choice.get("params", {}))
            for model_id, choice in overrides.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"invalid estimator configuration (RETRAIN_TRAINER_*ESTIMATOR*): {error}") from error
    return lambda model_id, task: per_model.get(model_id, defaults[task])


# A simpler tree than HistGradientBoosting's 31 leaves: it wins the holdout on many of Elec2's short post-change
# windows, while large windows of a stable stream keep the 31 (docs/evaluation.md#elec2).
AUTO_VARIANTS = {"HistGradientBoostingClassifier": [{"max_leaf_nodes": 15}]}


def estimator_variants(settings: TrainerSettings) -> list[dict]:
    """The classifier's parameter variants: RETRAIN_TRAINER_ESTIMATOR_VARIANTS, or ``auto``'s for its class."""
    if settings.estimator_variants.strip() == "auto":
        return AUTO_VARIANTS.get(settings.estimator.rpartition(".")[2], [])
    variants = json.loads(settings.estimator_variants)
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ValueError('RETRAIN_TRAINER_ESTIMATOR_VARIANTS must be "auto" or a JSON list of objects')
    return variants
