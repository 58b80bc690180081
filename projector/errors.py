"""Errors of the projector. Callers decide retry vs. give-up by reading ``retriable``.

The hierarchy is small on purpose. The store's errors are :class:`parley.errors.StoreError`
and its subclasses (shared with the search index, which keeps its tables in the same
database); those only the projection copies can raise are here. The query API maps
:class:`InvalidCursor` and :class:`UnknownPartition` to 400, :class:`UnknownProjection` to 503
and :class:`Overloaded` to 503 ``overloaded`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import ClassVar

from parley.errors import ParleyError, StoreError

__all__ = [
    "InvalidCursor",
    "InvalidProjectionName",
    "LiveProjectionDrop",
    "Overloaded",
    "ProjectorError",
    "UnknownPartition",
    "UnknownProjection",
]


class ProjectorError(ParleyError):
    """Base class. ``retriable`` tells callers whether trying again may help."""

    retriable: ClassVar[bool] = False


class UnknownProjection(StoreError):
    """The named projection copy does not exist (never created, or dropped after a rebuild)."""


class InvalidProjectionName(StoreError):
    """A projection name must be 1-64 characters of ``[A-Za-z0-9_]`` (compared ignoring case)."""


class LiveProjectionDrop(StoreError):
    """Refused to drop the projection that serves reads; switch reads away first."""

    @classmethod
    def of(cls, name: str) -> LiveProjectionDrop:
        """The refusal to drop the live copy ``name``, saying how reads move away from it
        (no command sets a copy live by hand: a rebuild switches reads to its new copy)."""
        return cls(f"projection {name!r} serves reads; a rebuild makes another copy live, "
                   "then it can be dropped")


class InvalidCursor(StoreError):
    """A pagination cursor was not one this store issued (tampered, truncated, other listing)."""


class Overloaded(ProjectorError):
    """Too many reads wait already (for a ``min_position``, or for one of the store's read
    connections); nothing was read: retry later."""

    retriable: ClassVar[bool] = True


class UnknownPartition(ProjectorError):
    """A ``min_position`` names a partition its topic does not have (by Kafka's metadata, read
    just now): no record can ever be there, so waiting for it would only time out."""

    @classmethod
    def of(cls, topic: str, partition: int, partitions: int) -> UnknownPartition:
        return cls(f"min_position: {topic} has {partitions} partition(s), 0 to "
                   f"{partitions - 1}; there is no partition {partition}")
