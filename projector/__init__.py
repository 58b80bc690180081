"""The projector: folds the event log into chat, visitor and agent state and serves it."""

from projector.fold import affected, apply
from projector.rebuild import rebuild
from projector.role import ProjectorRole
from projector.states import AggregateRef
from projector.store import Store
from projector.stores import open_store

__all__ = ["AggregateRef", "ProjectorRole", "Store", "affected", "apply", "open_store", "rebuild"]
