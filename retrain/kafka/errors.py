"""One error taxonomy for every client: a Kafka failure is retriable, fatal, or a fenced producer (fatal, but a
new producer under the same transactional id may carry on)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class KafkaFailure(Exception):
    """Kafka failed under an operation. ``name`` is the client's own name for the error (for logs and metrics)."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name or type(self).__name__

    def __str__(self) -> str:
        message = super().__str__()
        return message if message.startswith(self.name) else f"{self.name}: {message}"


class RetriableFailure(KafkaFailure):
    """The broker away, a timeout, a write not acknowledged: the batch is given up and read again."""


class FatalFailure(KafkaFailure):
    """No retry can cure it (not authorised, a configuration the broker refuses): the service stops."""


class ProducerFenced(FatalFailure):
    """Another producer with the same transactional id, or a transaction the broker timed out."""


class TopicAlreadyExists(KafkaFailure):
    """A topic asked for was created meanwhile."""


class PublishFailed(RetriableFailure):
    """Records sent since the last flush were not all written: whatever consumed their inputs must not commit."""


def translating(
    client_error: type[Exception], failure: Callable[[Any], KafkaFailure]
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A decorator that raises a client library's ``client_error`` as the seam's ``failure(error)``."""

    def translated(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return method(*args, **kwargs)
            except client_error as error:
                raise failure(error) from error

        return call

    return translated
