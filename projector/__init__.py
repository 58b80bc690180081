"""The projector: folds the event log into chat, visitor and agent state and serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projector.fold import affected, apply
from projector.rebuild import rebuild
from projector.states import AggregateRef
from projector.store import Store
from projector.stores import open_store

if TYPE_CHECKING:
    from projector.role import ProjectorRole

__all__ = ["AggregateRef", "ProjectorRole", "Store", "affected", "apply", "open_store", "rebuild"]


def __getattr__(name: str) -> object:
    # The role (aiohttp, the query API) is imported when first asked for, not with the
    # package: a parallel rebuild's worker processes need none of it, and importing it cost
    # each of them about a quarter of its start-up.
    if name == "ProjectorRole":
        from projector.role import ProjectorRole

        return ProjectorRole
    raise AttributeError(f"module 'projector' has no attribute {name!r}")
