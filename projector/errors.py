"""Errors of the projector. Callers decide retry vs. give-up by reading ``retriable``.

The hierarchy is small on purpose: the runner retries :class:`ProjectorError`s whose
``retriable`` is true and stops (or dead-letters) on the rest; the query API maps
:class:`InvalidCursor` to 400 and :class:`UnknownProjection` to 503.
"""

from __future__ import annotations

from typing import ClassVar

from parley.errors import ParleyError

__all__ = [
    "InvalidCursor",
    "InvalidProjectionName",
    "LiveProjectionDrop",
    "ProjectorError",
    "StoreError",
    "StoreUnavailable",
    "UnknownProjection",
    "UnsupportedStore",
]


class ProjectorError(ParleyError):
    """Base class. ``retriable`` tells callers whether trying again may help."""

    retriable: ClassVar[bool] = False


class StoreError(ProjectorError):
    """The state store refused an operation; the message says what to do."""


class StoreUnavailable(StoreError):
    """The store is busy or unreachable (e.g. SQLite locked past ``busy_timeout``).

    Retriable: nothing was written (the transaction was rolled back), so the same
    batch can be committed again.
    """

    retriable: ClassVar[bool] = True


class UnsupportedStore(StoreError):
    """``store.url`` names a store Parley cannot open (unknown or not yet supported scheme)."""


class UnknownProjection(StoreError):
    """The named projection copy does not exist (never created, or dropped after a rebuild)."""


class InvalidProjectionName(StoreError):
    """A projection name must be 1-64 characters of ``[A-Za-z0-9_]`` (compared ignoring case)."""


class LiveProjectionDrop(StoreError):
    """Refused to drop the projection that serves reads; switch reads away first."""


class InvalidCursor(StoreError):
    """A pagination cursor was not one this store issued (tampered, truncated, other listing)."""
