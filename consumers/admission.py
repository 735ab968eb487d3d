"""A service's admitted models: :class:`~retrain.decisions.admission.ModelAdmission`, refusals as dead letters.

A record of a model the service does not admit raises :class:`~retrain.consumers.service.InvalidRecord` with reason
``unknown_model``: the consume loop sends it to ``dead-letters`` and counts it in ``retrain_dead_letters_total``.
The number of admitted models is the gauge ``retrain_models_admitted{service}``.
"""

from __future__ import annotations

from retrain.consumers.metrics import ServiceMetrics
from retrain.consumers.service import InvalidRecord
from retrain.decisions.admission import REFUSAL_REASON, ModelAdmission, Verdict


class AdmittedModels:
    def __init__(self, admission: ModelAdmission, metrics: ServiceMetrics) -> None:
        self.admission = admission
        self._gauge = metrics.models_admitted.labels(metrics.service)
        self._gauge.set(len(admission))

    def __len__(self) -> int:
        return len(self.admission)

    def require(self, model_id: str) -> None:
        """Go on with a record of ``model_id``, or raise the ``unknown_model`` refusal."""
        verdict = self.admission.admit(model_id)
        if verdict is Verdict.NEW:
            self._gauge.set(len(self.admission))
        elif verdict is not Verdict.ADMITTED:
            raise InvalidRecord(REFUSAL_REASON, self.admission.why(model_id, verdict))

    def known(self, model_id: str) -> bool:
        """A model the pipeline vouched for (restored, promoted, registered): admitted unless the allow-list says no."""
        verdict = self.admission.known(model_id)
        if verdict is Verdict.NEW:
            self._gauge.set(len(self.admission))
        return verdict.admitted
