"""The ``flights`` generator: seeded flights labelled delayed or not by one concept's rules, with categorical,
boolean and partly missing features."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from retrain.schemas.types import FeatureValue


@dataclass(frozen=True)
class _FlightRules:
    """One concept of ``flights``: which carriers fly, and what makes a flight late."""

    carriers: tuple[str, ...]
    late_carriers: frozenset[str]  # late when they depart in [late_from, late_to) o'clock
    late_from: float
    late_to: float
    busy_origins: frozenset[str]  # late on weekends (busy_on_weekend) or on weekdays
    busy_on_weekend: bool
    long_haul: float  # a flight at least this long is late (a missing distance is not)


_CARRIERS = ("AA", "DL", "UA", "WN", "B6", "AS", "NK", "F9")
_NEW_CARRIERS = ("XE", "ZK")  # never flown in concept 0: a model trained there meets unseen categories
_AIRPORTS = (
    "ATL", "BOS", "CLT", "DEN", "DFW", "DTW", "EWR", "IAH", "JFK", "LAS",
    "LAX", "LGA", "MCO", "MIA", "MSP", "ORD", "PHL", "PHX", "SEA", "SFO",
)  # fmt: skip
_FLIGHT_RULES = (
    _FlightRules(  # evening low-cost carriers, weekday hubs in the north-east and on the west coast
        carriers=_CARRIERS,
        late_carriers=frozenset({"NK", "F9", "B6"}),
        late_from=15,
        late_to=24,
        busy_origins=frozenset({"ORD", "EWR", "SFO", "LGA"}),
        busy_on_weekend=False,
        long_haul=2_400,
    ),
    _FlightRules(  # morning legacy carriers and a new one, weekend leisure airports, more long hauls
        carriers=_CARRIERS + _NEW_CARRIERS,
        late_carriers=frozenset({"AA", "UA", "XE"}),
        late_from=5,
        late_to=12,
        busy_origins=frozenset({"DEN", "DFW", "LAS", "MCO"}),
        busy_on_weekend=True,
        long_haul=2_000,
    ),
    _FlightRules(  # midday, the other new carrier; weekday east-coast airports
        carriers=_CARRIERS + _NEW_CARRIERS,
        late_carriers=frozenset({"WN", "DL", "ZK", "NK"}),
        late_from=10,
        late_to=19,
        busy_origins=frozenset({"BOS", "JFK", "MIA", "ATL"}),
        busy_on_weekend=False,
        long_haul=2_700,
    ),
)
_MISSING_DISTANCE = 0.05  # share of flights whose distance is missing (None)


class _Flight(NamedTuple):
    carrier: str
    origin: str
    weekend: bool
    distance: float | None
    departure_hour: float

    def delayed(self, rules: _FlightRules) -> bool:
        """A concept's deterministic rule (before label noise)."""
        return (
            (self.carrier in rules.late_carriers and rules.late_from <= self.departure_hour < rules.late_to)
            or (self.origin in rules.busy_origins and self.weekend is rules.busy_on_weekend)
            or (self.distance is not None and self.distance >= rules.long_haul)
        )


class _Flights:
    """Seeded flights labelled delayed (1) or not (0) by one concept's rules, each label flipped with probability
    ``noise``: categorical (carrier, origin), boolean (weekend), partly missing (distance) and numeric features."""

    def __init__(self, concept: int, seed: int, noise: float) -> None:
        self.rules = _FLIGHT_RULES[concept]
        self.concept = concept
        self.seed = seed
        self.noise = noise

    def __iter__(self) -> Iterator[tuple[dict[str, FeatureValue], int]]:
        rng = random.Random(f"flights:{self.seed}:{self.concept}")  # a str seed is stable across runs
        while True:
            flight = _draw_flight(rng, self.rules.carriers)
            flipped = rng.random() < self.noise
            yield dict(flight._asdict()), int(flight.delayed(self.rules) != flipped)


def _draw_flight(rng: random.Random, carriers: tuple[str, ...]) -> _Flight:
    # The same draws whether or not the distance goes missing, so nothing else depends on it.
    carrier, origin = rng.choice(carriers), rng.choice(_AIRPORTS)
    weekend = rng.random() < 2 / 7
    distance = round(rng.uniform(150.0, 3_000.0), 1)
    missing = rng.random() < _MISSING_DISTANCE
    return _Flight(carrier, origin, weekend, None if missing else distance, float(rng.randrange(24)))
