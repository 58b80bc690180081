"""Errors of the consumer runtime and of consumer handlers.

Retry and dead-letter decisions read one attribute, ``retriable`` (as aiokafka's errors do):
a retriable failure is tried again with jittered backoff up to the group's attempt budget; a
non-retriable one goes to the dead-letter topic at once. See :func:`is_retriable` for how
exceptions without the attribute are classified.
"""

from __future__ import annotations

import asyncio

from parley.errors import ParleyError

__all__ = [
    "ConsumerError",
    "ConsumerNotFound",
    "GroupActive",
    "HandlerError",
    "PermanentError",
    "RetriableError",
    "is_retriable",
]


class ConsumerError(ParleyError):
    """Base class of this package's errors."""


class HandlerError(ConsumerError):
    """Raised by a handler to say explicitly how its failure should be treated."""


class RetriableError(HandlerError):
    """A transient failure (a dependency is down, rate limited, timed out): try again."""

    retriable = True


class PermanentError(HandlerError):
    """The event can never be handled as it is (bad data, rejected by the target): dead-letter
    it now instead of burning the retry budget."""

    retriable = False


class ConsumerNotFound(ConsumerError):
    """No consumer of that name: not built in, not an entry point, not ``module:attribute``."""


class GroupActive(ConsumerError):
    """An operation that needs an idle consumer group found members in it."""


def is_retriable(exc: BaseException) -> bool:
    """Whether trying ``exc``'s operation again may succeed.

    An explicit ``retriable`` attribute wins (Parley's errors, aiokafka's errors,
    :class:`contracts.errors.ContractError` which is never retriable). Anything else is treated
    as retriable: an unclassified exception may be an outage of a dependency, and retries are
    bounded, so the worst case is a short delay before the event is dead-lettered anyway.
    """
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, (TypeError, ValueError, KeyError, AttributeError, LookupError)):
        return False  # programming or data errors: the same input fails the same way
    return isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError)
