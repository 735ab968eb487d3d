"""Raw prediction and label records for the state-store tests: five models, event times in the recent past."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

MODELS = ("fraud", "churn", "credit", "ltv", "upsell")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)  # event times in the past: none refused
LABEL_DELAY = timedelta(hours=3)


def prediction_bytes(i: int) -> tuple[bytes, bytes]:
    model = MODELS[i % len(MODELS)]
    event = {
        "schema_version": 1,
        "prediction_id": f"p-{i}",
        "model_id": model,
        "model_version": 0,
        "features": {"x0": (i % 97) / 97, "x1": (i % 13) / 13, "x2": float(i % 2)},
        "prediction": i % 2,
        "timestamp": (START + timedelta(milliseconds=100 * i)).isoformat().replace("+00:00", "Z"),
    }
    return model.encode(), json.dumps(event).encode()


def label_bytes(i: int) -> tuple[bytes, bytes]:
    model = MODELS[i % len(MODELS)]
    at = START + timedelta(milliseconds=100 * i) + LABEL_DELAY
    event = {
        "schema_version": 1,
        "prediction_id": f"p-{i}",
        "model_id": model,
        "label": (i // 7) % 2,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }
    return model.encode(), json.dumps(event).encode()
