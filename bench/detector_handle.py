"""Benchmark: the detector's own work per record, without Kafka, next to decoding the same records with pydantic.

``DetectorService.handle`` over N predictions then N labels (SEA features, one model), each poll batch of 1,000
closed by ``after_batch``, the outputs sent to a producer that drops them; the baseline is the pydantic models
alone decoding the same records (``decode(..., fast_path=False)``), the decoder the hot path had before msgspec.
Usage:

    .venv/bin/python -m bench.detector_handle [--examples 20000]
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry

from consumers.detector import DetectorService
from consumers.runtime import Outputs
from producers import EventPublisher
from retrain.kafka import Record
from retrain.settings import DetectorSettings, TopicSettings
from schemas import LabelEvent, PredictionEvent, decode, encode
from tests.integration.streams import sea_model, sea_stream


class DroppingProducer:
    transactional = False

    def send(self, *args: object, **kwargs: object) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...

    def forget_unflushed(self) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    topics = TopicSettings()
    stream = sea_stream(sea_model(), n=args.examples, drift_at=None, model_id="bench")
    now_ms = int(time.time() * 1000)
    records = [Record(topics.predictions, 0, i, b"bench", encode(s.prediction), now_ms) for i, s in enumerate(stream)]
    records += [Record(topics.labels, 0, i, b"bench", encode(s.label), now_ms) for i, s in enumerate(stream)]

    started = time.perf_counter()
    for record in records:
        decode(record.value, PredictionEvent if record.topic == topics.predictions else LabelEvent, fast_path=False)
    pydantic = time.perf_counter() - started

    service = DetectorService(DetectorSettings(), topics, registry=CollectorRegistry())
    out = Outputs(EventPublisher(DroppingProducer(), topics), "detector")  # type: ignore[arg-type]
    started = time.perf_counter()
    for start in range(0, len(records), 1_000):
        for record in records[start : start + 1_000]:
            service.handle(record, out)
        service.after_batch(out)
    handled = time.perf_counter() - started
    assert service.joiners[0].stats.joined == args.examples

    n = len(records)
    print(f"records: {n} ({args.examples} predictions + {args.examples} labels)")
    print(f"pydantic decode alone (baseline): {pydantic / n * 1e6:.1f} us per record")
    print(
        f"detector handle (decode, join, ADWIN + Page-Hinkley, example encoded and sent to a dropping producer, "
        f"metrics per batch): {handled / n * 1e6:.1f} us per record = {args.examples / handled:,.0f} labeled "
        f"examples/s; {handled / pydantic:.2f} x the pydantic decode alone"
    )


if __name__ == "__main__":
    main()
