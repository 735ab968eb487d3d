"""The detector over Kafka and ``retrain evaluate`` offline make the same decisions on the same labeled stream."""

from __future__ import annotations

import pytest

from retrain import simulation
from retrain.configure import policy_config
from retrain.consumers.decoding import decode_record
from retrain.consumers.wiring import run_detector
from retrain.decisions.training import TrainingConfig, estimator_factory
from retrain.producers.streams import GeneratorSource
from retrain.schemas import LabelEvent, PredictionEvent, RetrainEvent, encode
from retrain.settings import BrokerSettings, DetectorSettings, KafkaSettings, Settings, TopicSettings
from tests.helpers.kafka_io import make_producer, read_all
from tests.helpers.running import RunningService

pytestmark = pytest.mark.kafka


def test_the_detector_over_kafka_decides_exactly_what_evaluate_decided(
    kafka_settings: KafkaSettings, created_topics: TopicSettings, unique: str
):
    detector_settings = DetectorSettings(group_id=f"detector-{unique}")
    source = GeneratorSource("agrawal", (0, 2, 4), (8_000, 16_000), 24_000, seed=5)
    trainer = simulation.TrainerSetup(
        TrainingConfig(default_window=5_000), estimator_factory("sklearn.tree.DecisionTreeClassifier", {})
    )
    recorded = []
    offline = simulation.simulate(
        list(source),
        simulation.Strategy("default", policy_config(detector_settings, "classification")),
        trainer,
        drift_points=source.drift_points,
        model_id="brain",
        on_example=recorded.append,
    )
    assert len(offline.detections) == 2 and offline.promotions >= 3  # the stream has something to decide

    # The same predictions (made by evaluate's models, with their versions) and labels, through Kafka.
    producer = make_producer(kafka_settings, linger_ms=20, batch_size=512 * 1024)
    try:
        for example in recorded:
            prediction = PredictionEvent(
                prediction_id=example.prediction_id,
                model_id=example.model_id,
                model_version=example.model_version,
                features=example.features,
                prediction=example.prediction,
                timestamp=example.prediction_timestamp,
            )
            label = LabelEvent(
                prediction_id=example.prediction_id,
                model_id=example.model_id,
                label=example.label,
                timestamp=example.label_timestamp,
            )
            producer.send(created_topics.predictions, key=b"brain", value=encode(prediction))
            producer.send(created_topics.labels, key=b"brain", value=encode(label))
        producer.flush()
    finally:
        producer.close()
    settings = Settings(
        kafka=kafka_settings, topics=created_topics, broker=BrokerSettings(), detector=detector_settings
    )
    detector = RunningService(run_detector, settings)
    try:
        detector.wait_for("retrain_joins_total", len(recorded), timeout_s=240, outcome="joined")
    finally:
        detector.stop()

    events = [decode_record(r, RetrainEvent) for r in read_all(kafka_settings, created_topics.retrain_events, 1)]
    over_kafka = [(int(e.evidence.values.get("position", -1)), e.reason.value) for e in events]
    detections = sorted(
        {
            int(e.evidence.values["detected_at"])
            for e in events
            if "detected_at" in e.evidence.values and e.reason.value != "data_volume"
        }
    )
    assert detections == offline.detections, (detections, offline.detections)
    # Every drift or performance event evaluate acted on, at the same labeled-example position.
    offline_events = [(index, reason) for index, reason, _ in offline.events]
    kafka_positions = [p for p, reason in over_kafka if reason != "data_volume"]
    expected = [index for index, reason in offline_events if reason != "data_volume"]
    assert len(expected) >= 2 and kafka_positions == expected, (kafka_positions, expected)
