"""Constrained field types shared by every event: finite numbers, UTC timestamps, bounded identifiers.

Strictness is deliberate: a JSON string ``"1.5"`` is a category, not a number; a naive timestamp is not a
time; ``NaN`` is not a feature value (a missing value is ``null``). What a producer in another language must
send is exactly what the exported JSON Schema says.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

MAX_FEATURES = 1024
MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 128
MAX_TEXT_LENGTH = 2048
MAX_CLASS_LABEL_LENGTH = 256
MAX_CATEGORY_LENGTH = 256
MAX_METRICS = 64

# A model id becomes a registry directory, a metric label and a Kafka key: keep it to a safe alphabet.
ModelId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    Field(description="Model identifier: letters, digits, '.', '_' and '-', starting with a letter or digit."),
]
# Identifiers made by clients (UUIDs, database keys, ...): printable ASCII without spaces.
EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[!-~]+$"),
    Field(description="Printable ASCII identifier without whitespace."),
]
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ModelVersion = Annotated[StrictInt, Field(ge=0, le=2**31 - 1, description="0 means 'no trained model yet'.")]
Count = Annotated[StrictInt, Field(ge=0, le=2**62)]

FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
# A number: JSON integers are accepted too (StrictFloat takes ints, not bools or strings).
Number = FiniteFloat

ClassLabel = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CLASS_LABEL_LENGTH)]
# Integer targets are 64-bit, like a Java long or a numpy int64: the trainer's label arrays are int64, and a larger
# integer cannot even be scored as a regression target once past a double's range (float() overflows).
MIN_TARGET_INTEGER, MAX_TARGET_INTEGER = -(2**63), 2**63 - 1
TargetInteger = Annotated[StrictInt, Field(ge=MIN_TARGET_INTEGER, le=MAX_TARGET_INTEGER)]


def _integer_in_range(value: Any) -> Any:
    # Without this, an integer out of range would fall through the union to the float member and become a
    # different (rounded) value instead of being refused.
    if isinstance(value, int) and not isinstance(value, bool) and not MIN_TARGET_INTEGER <= value <= MAX_TARGET_INTEGER:
        raise ValueError(f"an integer target must fit in 64 bits (a signed long), not {str(value)[:40]}")
    return value


# A prediction or a ground-truth label: a class (bool, int or string) or a regression target (float).
Target = Annotated[StrictBool | TargetInteger | FiniteFloat | ClassLabel, BeforeValidator(_integer_in_range)]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_text(value: Any) -> Any:
    # pydantic would read a number, or a string of digits, as seconds since the epoch; the wire format is
    # RFC 3339 text only (a datetime object from Python code is fine).
    if isinstance(value, int | float):
        raise ValueError("a timestamp must be an RFC 3339 string with a timezone, not a number")
    if isinstance(value, str) and not _RFC3339_START.match(value):
        raise ValueError("a timestamp must be an RFC 3339 string such as 2026-11-28T09:30:00Z")
    return value


UtcTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_to_utc),
    Field(description="RFC 3339 timestamp with a timezone offset; stored in UTC."),
]

# pydantic puts the key pattern under patternProperties only, which lets any other key through a JSON Schema
# validator; state the key constraints in propertyNames too.
_NAME_KEYS = {"propertyNames": {"minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": NAME_PATTERN}}
Category = Annotated[str, StringConstraints(max_length=MAX_CATEGORY_LENGTH)]


def _one_feature_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One message instead of one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        shown = repr(value) if not isinstance(value, str) else f"a string of {len(value)} characters"
        raise ValueError(
            f"a feature value is a finite number, a boolean, a string of at most {MAX_CATEGORY_LENGTH} characters "
            f"or null, not {shown[:60]}"
        ) from None


# A feature's value: a number, a boolean, a category, or null (missing).
FeatureValue = Annotated[StrictBool | FiniteFloat | Category | None, WrapValidator(_one_feature_error)]
Features = Annotated[
    dict[Name, FeatureValue],
    Field(
        min_length=1,
        max_length=MAX_FEATURES,
        description="Feature name -> finite number, boolean, category (a string of at most 256 characters) or "
        "null (missing).",
        json_schema_extra=_NAME_KEYS,
    ),
]
Metrics = Annotated[dict[Name, FiniteFloat], Field(max_length=MAX_METRICS, json_schema_extra=_NAME_KEYS)]


def utc_now() -> datetime:
    return datetime.now(UTC)
