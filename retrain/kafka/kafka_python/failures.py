"""kafka-python's errors as the seam's: which are a fencing, fatal, or retriable."""

from __future__ import annotations

from kafka.errors import (
    AuthorizationError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)

from retrain.kafka.errors import (
    FatalFailure,
    KafkaFailure,
    ProducerFenced,
    RetriableFailure,
    TopicAlreadyExists,
    translating,
)

_FENCED = (ProducerFencedError, InvalidProducerEpochError)
_FATAL = (
    AuthorizationError,
    SaslAuthenticationFailedError,
    IllegalStateError,
    KafkaConfigurationError,
    UnsupportedVersionError,
)


def failure(error: KafkaError) -> KafkaFailure:
    """kafka-python's error as the seam's: fenced, fatal, or retriable (everything else)."""
    if isinstance(error, TopicAlreadyExistsError):
        kind: type[KafkaFailure] = TopicAlreadyExists
    elif isinstance(error, _FENCED):
        kind = ProducerFenced
    elif isinstance(error, _FATAL):
        kind = FatalFailure
    else:
        kind = RetriableFailure
    return kind(str(error), type(error).__name__)


def _as_failure(error: BaseException) -> BaseException:
    return failure(error) if isinstance(error, KafkaError) else error


translated = translating(KafkaError, failure)
