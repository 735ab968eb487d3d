"""Event time is untrusted input: a record dated far ahead of its arrival is refused and moves no watermark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retrain.consumers.detector import DetectorService
from retrain.consumers.service import InvalidRecord
from retrain.decisions.join import LabelJoiner, ahead_of_arrival
from retrain.kafka import Record
from retrain.schemas import LabelEvent, PredictionEvent, encode
from retrain.settings import DetectorSettings, TopicSettings

TOPICS = TopicSettings()
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=2)
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def prediction(pid: str, at: datetime) -> PredictionEvent:
    return PredictionEvent(
        prediction_id=pid, model_id="m", model_version=0, features={"x": 1.0}, prediction=1, timestamp=at
    )


def label(pid: str, at: datetime) -> LabelEvent:
    return LabelEvent(prediction_id=pid, model_id="m", label=1, timestamp=at)


def record(topic: str, offset: int, event, written_at: datetime | None) -> Record:
    timestamp = -1 if written_at is None else int(written_at.timestamp() * 1000)
    return Record(topic, 0, offset, b"m", encode(event), timestamp)


class Outputs:
    def __init__(self) -> None:
        self.events: list = []
        self.dead: list = []

    def emit(self, event) -> None:
        self.events.append(event)

    def dead_letter(self, letter) -> None:
        self.dead.append(letter)


@pytest.mark.parametrize(
    ("event", "record_time", "now", "ahead"),
    [
        (1_000.0, 1_000.0, 1_000.0, 0.0),
        (1_300.0, 1_000.0, 1_000.0, 0.0),  # exactly the allowed skew
        (1_301.5, 1_000.0, 1_000.0, 1.5),
        (1_400.0, 1_200.0, 1_000.0, 100.0),  # the producer's clock ahead too: the wall clock decides
        (1_400.0, 900.0, 1_000.0, 200.0),
        (1_400.0, None, 1_000.0, 100.0),  # no record timestamp: the wall clock
        (-5_000.0, 1_000.0, 1_000.0, 0.0),  # late data is fine, however late
    ],
)
def test_how_far_ahead_of_its_arrival_an_event_is(event, record_time, now, ahead) -> None:
    assert ahead_of_arrival(event, record_time, now, 300.0) == ahead


def test_a_prediction_and_a_label_dated_2100_are_refused_and_expire_nothing() -> None:
    # What they would do to a joiner that took them: expire every pending prediction at once.
    exposed = LabelJoiner(prediction_ttl_s=3_600, label_ttl_s=600)
    for i in range(1_000):
        exposed.add_prediction(prediction(f"p{i}", START + timedelta(seconds=i)), i)
    exposed.add_prediction(prediction("future", FUTURE), 1_000)
    exposed.add_label(label("future-label", FUTURE), 0)
    assert len(exposed.expire().predictions) == 1_000

    detector = DetectorService(DetectorSettings(), TOPICS)
    out = Outputs()
    for i in range(1_000):
        at = START + timedelta(seconds=i)
        detector.handle(record(TOPICS.predictions, i, prediction(f"p{i}", at), at), out)  # type: ignore[arg-type]
    detector.handle(record(TOPICS.labels, 0, label("p0", START), START), out)  # both sides seen: p0 joins
    refusals = []
    for topic, event, written in (
        (TOPICS.predictions, prediction("future", FUTURE), NOW),
        (TOPICS.labels, label("future-label", FUTURE), NOW),
        (TOPICS.labels, label("p1", FUTURE), None),  # no record timestamp: the clock says it is too early
        (TOPICS.labels, label("p2", FUTURE), FUTURE),  # a producer clock as wrong as the event's
    ):
        with pytest.raises(InvalidRecord) as refused:
            detector.handle(record(topic, 1_000, event, written), out)  # type: ignore[arg-type]
        refusals.append(refused.value.reason)
    detector.after_batch(out)  # type: ignore[arg-type]

    assert refusals == ["future_event_time"] * 4
    assert "2100-01-01T00:00:00+00:00 is" in str(refused.value) and "RETRAIN_DETECTOR_MAX_EVENT_TIME_SKEW_S" in str(
        refused.value
    )
    joiner = detector.joiners[0]
    assert (joiner.pending_predictions, joiner.stats.expired_predictions, out.dead) == (999, 0, [])
    assert joiner.watermark == START.timestamp()  # the labels' latest time: p0's


def test_records_within_the_allowed_skew_are_joined() -> None:
    detector = DetectorService(DetectorSettings(max_event_time_skew_s=60), TOPICS)
    out = Outputs()
    soon = NOW + timedelta(seconds=30)
    detector.handle(record(TOPICS.predictions, 0, prediction("a", soon), NOW), out)  # type: ignore[arg-type]
    detector.handle(record(TOPICS.labels, 0, label("a", soon), NOW), out)  # type: ignore[arg-type]
    assert [e.prediction_id for e in out.events] == ["a"]
