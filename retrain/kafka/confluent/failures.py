"""librdkafka's errors as the seam's: which codes are a fencing, fatal, or retriable."""

from __future__ import annotations

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from retrain.kafka.errors import (
    FatalFailure,
    KafkaFailure,
    ProducerFenced,
    RetriableFailure,
    TopicAlreadyExists,
    translating,
)

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
# No retry cures these: not authorised, not authenticated, a feature or configuration refused, misuse.
_FATAL = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._AUTHENTICATION,
        KafkaError._INVALID_ARG,
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError._NOT_IMPLEMENTED,
        KafkaError._STATE,  # kafka-python's IllegalStateError (a transactional call out of turn) is fatal too
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.INVALID_CONFIG,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.INVALID_TRANSACTION_TIMEOUT,
    }
)
# A subscribed topic the broker does not know (yet): kafka-python waits quietly for it, and so does this adapter.
_MISSING_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})


def failure(error: KafkaError | KafkaException) -> KafkaFailure:
    """librdkafka's error as the seam's: fenced, fatal, or retriable (everything else, abortable ones included)."""
    if isinstance(error, KafkaException):
        inner = error.args[0] if error.args else None
        if not isinstance(inner, KafkaError):
            return RetriableFailure(str(error), "KafkaException")
        error = inner
    code = error.code()
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        kind: type[KafkaFailure] = TopicAlreadyExists
    elif code in _FENCED or (code == KafkaError._FATAL and "fenced" in (error.str() or "").lower()):
        # librdkafka reports a fencing as its generic _FATAL once noted; its text is the only sign left of it.
        kind = ProducerFenced
    elif error.fatal():
        kind = FatalFailure
    elif error.txn_requires_abort():
        kind = RetriableFailure  # the loop aborts the transaction and reads the batch again
    elif code in _FATAL:
        kind = FatalFailure
    else:
        kind = RetriableFailure
    return kind(error.str() or error.name(), error.name())


translated = translating(KafkaException, failure)


def _kafka_cause(error: BaseException) -> KafkaException | None:
    """The librdkafka error behind ``error`` (confluent-kafka wraps one raised inside a callback in a SystemError)."""
    seen = error.__cause__ or error.__context__
    while seen is not None and not isinstance(seen, KafkaException):
        seen = seen.__cause__ or seen.__context__
    return seen


def _checked(partitions: list[confluent_kafka.TopicPartition]) -> list[confluent_kafka.TopicPartition]:
    """librdkafka reports per-partition failures in the results rather than raising: raise the first."""
    for partition in partitions:
        if partition.error is not None:
            raise failure(partition.error)
    return partitions
