"""River's generators (and ``flights``) as a drifting stream: a :class:`GeneratorSource` switches concepts, abruptly
or gradually, at its drift points."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from retrain.producers.examples import Example, Target
from retrain.producers.flights import _FLIGHT_RULES, _Flights
from retrain.schemas.types import FeatureValue


def _concept(generator: str, concept: int, seed: int, noise: float) -> Any:
    """One River generator in one concept (its classification function; a model seed for the others)."""
    from river.datasets import synth  # here, not at the top: `retrain`'s parser imports this module (2.5 s)

    if generator == "sea":
        return synth.SEA(variant=concept, noise=noise, seed=seed)
    if generator == "agrawal":
        return synth.Agrawal(classification_function=concept, seed=seed, perturbation=noise)
    if generator == "stagger":
        return synth.STAGGER(classification_function=concept, seed=seed)
    if generator == "hyperplane":
        return synth.Hyperplane(seed=seed * 1_000 + concept, noise_percentage=noise)
    if generator == "rbf":
        return synth.RandomRBFDrift(seed_model=concept, seed_sample=seed)
    if generator == "friedman":  # regression; a concept is which of the ten features the function reads
        return _FriedmanConcept(synth.Friedman(seed=seed), concept)
    if generator == "flights":
        return _Flights(concept, seed, noise)
    raise ValueError(f"unknown generator {generator!r}; choose one of {', '.join(GENERATORS)}")


class _FriedmanConcept:
    """Friedman #1 (a regression target from features 0-4; 5-9 are noise) with its features renamed: concept 1
    swaps the relevant and the noise halves, concept 2 reverses their order (as River's FriedmanDrift does)."""

    def __init__(self, source: Any, concept: int) -> None:
        self.source = source
        self.order = [list(range(10)), [5, 6, 7, 8, 9, 0, 1, 2, 3, 4], list(range(9, -1, -1))][concept]

    def __iter__(self) -> Iterator[tuple[dict[int, float], float]]:
        for features, target in self.source:
            yield {self.order[name]: value for name, value in features.items()}, target


GENERATORS = ("sea", "agrawal", "stagger", "hyperplane", "rbf", "friedman", "flights")
REGRESSION_GENERATORS = ("friedman",)
_CONCEPT_RANGES = {
    "sea": range(4),
    "agrawal": range(10),
    "stagger": range(3),
    "friedman": range(3),
    "flights": range(len(_FLIGHT_RULES)),
}


@dataclass(frozen=True)
class GeneratorSource:
    """``concepts[i]`` is in force from ``drift_points[i-1]`` on; each switch is spread over ``width`` examples."""

    generator: str
    concepts: tuple[int, ...]
    drift_points: tuple[int, ...]
    examples: int
    seed: int = 42
    noise: float = 0.0
    width: int = 1

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; choose one of {', '.join(GENERATORS)}")
        allowed = _CONCEPT_RANGES.get(self.generator)
        if allowed is not None and any(c not in allowed for c in self.concepts):
            raise ValueError(f"{self.generator} concepts must be in {allowed.start}..{allowed.stop - 1}")
        if len(self.drift_points) != len(self.concepts) - 1:
            raise ValueError(f"{len(self.concepts)} concepts need {len(self.concepts) - 1} drift points")
        if list(self.drift_points) != sorted(set(self.drift_points)) or any(p <= 0 for p in self.drift_points):
            raise ValueError("drift points must be positive and increasing")
        if self.examples < 1 or self.width < 1:
            raise ValueError("examples and width must be >= 1")
        if not 0 <= self.noise < 1:
            raise ValueError("noise must be in [0, 1)")

    def __iter__(self) -> Iterator[Example]:
        # River's ConceptDriftStream semantics (a sigmoid of width `width` around each point; each concept's
        # generator advances only when drawn from), without its overflow far from the point when width is 1.
        streams = [
            iter(_concept(self.generator, concept, self.seed + index, self.noise))
            for index, concept in enumerate(self.concepts)
        ]
        chooser = random.Random(self.seed)
        for position in range(self.examples):
            segment = 0
            for index, point in enumerate(self.drift_points, start=1):
                exponent = max(-50.0, min(50.0, -4.0 * (position - point) / self.width))
                if chooser.random() < 1.0 / (1.0 + math.exp(exponent)):
                    segment = index
            features, target = next(streams[segment])
            yield Example({str(name): _feature(value) for name, value in features.items()}, _target(target))

    @property
    def description(self) -> str:
        points = ",".join(str(p) for p in self.drift_points) or "none"
        concepts = "->".join(str(c) for c in self.concepts)
        return f"{self.generator} concepts {concepts}, drifts at {points}, {self.examples:,} examples, seed {self.seed}"


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"feature value {value!r} is not a finite number")
    return number


def _feature(value: Any) -> FeatureValue:
    """A generator's feature value as an event carries it: River's ints and numpy numbers become floats."""
    if value is None or isinstance(value, bool | str):
        return value
    return _number(value)


def _target(value: Any) -> Target:
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "item"):
        return value.item()
    return value
