"""How the PostgreSQL store reports a failure: :class:`StoreConflict` (another writer's offsets
moved past a batch's), and :func:`translate` from asyncpg's exceptions to Parley's, retriable
(:class:`~parley.errors.StoreUnavailable`: nothing was written) or not. Messages name the
server as ``host:port/database``, never the URL (it may carry a password)."""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from parley.errors import StoreError, StoreUnavailable
from projector.errors import ProjectorError, UnknownProjection

__all__ = ["TRANSIENT", "StoreConflict", "translate"]


class StoreConflict(StoreUnavailable):
    """Another writer got there first (an offset moved past this batch's); nothing written.

    Retriable: re-read the stored offsets and fold again from there.
    """

    retriable: ClassVar[bool] = True


# Exceptions after which nothing was written and trying again may succeed.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.TransactionRollbackError,  # deadlock detected, serialization failure
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, cannot connect now, cancel
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.InterfaceError,  # connection lost mid-call
    OSError,
    TimeoutError,
)


def translate(exc: Exception, where: str) -> ProjectorError | StoreError:
    """``exc`` as Parley's error for a failure at ``where`` (``host:port/database``)."""
    if isinstance(exc, ProjectorError | StoreError):
        return exc
    if isinstance(exc, asyncpg.exceptions.UndefinedTableError):
        return UnknownProjection("projection does not exist (dropped, or never created)")
    if isinstance(exc, TRANSIENT):
        return StoreUnavailable(
            f"PostgreSQL at {where} is unavailable or busy ({type(exc).__name__}: {exc}); "
            "nothing was written, try again")
    return StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}")
