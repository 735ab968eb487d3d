"""Which model ids a service takes on: an optional allow-list, and a cap on the models of one service.

Any producer can name any ``model_id``, and every service keeps something per model it has seen (a drift watch,
a buffer, a served version, metric series) for as long as it runs. :class:`ModelAdmission` bounds that set:

- with an allow-list, exactly the listed ids are admitted, whatever arrived first (the cap does not apply: the
  list is the bound, so a flood of other ids can never lock a listed model out);
- without one, ids are admitted first come, first served, until ``max_models`` of them are; every other id is
  refused from then on. A legitimate model that first appears after a flood filled the cap is refused too: set an
  allow-list where producers are not trusted.

Models the pipeline already vouched for (a watch restored from a snapshot, a version promoted in
``model-updates``, a model in the registry) are :meth:`~ModelAdmission.known`: admitted even when the cap is
full, so that a restart, whose first records may be a flood's, keeps every model it had (an allow-list still
wins: a known model no longer listed stays refused). An admitted id stays admitted for the life of the service,
so the set only grows, up to the cap plus the known models.

No Kafka here: the services ask, and turn a refusal into a dead letter with reason ``unknown_model``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

REFUSAL_REASON = "unknown_model"  # the dead letter's error_reason of a refused record


class Verdict(StrEnum):
    ADMITTED = "admitted"  # already admitted before
    NEW = "new"  # admitted just now (the admitted set grew by one)
    NOT_LISTED = "not_listed"  # refused: not on the allow-list
    FULL = "full"  # refused: no allow-list, and max_models other ids were admitted first

    @property
    def admitted(self) -> bool:
        return self in (Verdict.ADMITTED, Verdict.NEW)


class ModelAdmission:
    """The model ids one service admits; see the module's docstring."""

    def __init__(self, allowed: Iterable[str] | None = None, max_models: int = 10_000) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        listed = frozenset(allowed) if allowed is not None else frozenset()
        self.allowed: frozenset[str] | None = listed or None  # None: any id, up to the cap
        self.max_models = max_models
        self._admitted: set[str] = set()
        self.refused = 0  # records refused so far (every ask that was refused, not distinct ids)

    def __len__(self) -> int:
        return len(self._admitted)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._admitted

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._admitted)

    def admit(self, model_id: str) -> Verdict:
        """Is a record of ``model_id`` taken on? Admits a new id while there is room."""
        if model_id in self._admitted:
            return Verdict.ADMITTED
        if self.allowed is not None:
            if model_id not in self.allowed:
                self.refused += 1
                return Verdict.NOT_LISTED
        elif len(self._admitted) >= self.max_models:
            self.refused += 1
            return Verdict.FULL
        self._admitted.add(model_id)
        return Verdict.NEW

    def known(self, model_id: str) -> Verdict:
        """A model the pipeline already vouched for: admitted beyond the cap, but never against the allow-list."""
        if model_id in self._admitted:
            return Verdict.ADMITTED
        if self.allowed is not None and model_id not in self.allowed:
            return Verdict.NOT_LISTED
        self._admitted.add(model_id)
        return Verdict.NEW

    def why(self, model_id: str, verdict: Verdict) -> str:
        """The dead letter's message for a refused ``model_id``."""
        if verdict is Verdict.NOT_LISTED:
            return f"model {model_id} is not on the allow-list of {len(self.allowed or ())} model ids"
        if verdict is Verdict.FULL:
            return (
                f"model {model_id} is not admitted: this service already has its maximum of {self.max_models} models "
                "(set an allow-list of model ids, or raise the cap)"
            )
        return f"model {model_id} is admitted"
