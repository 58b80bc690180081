"""Merging two fold states of one aggregate: what lets several projectors share one store.

Pure (no I/O). Chats and messages are keyed by their chat id, so exactly one partition — and
so one projector instance at a time — writes them. Visitors and agents are not: a visitor
is touched by ``VisitorSeen`` events beside the webhooks of every chat it is in, and those
chats live in different partitions, which different instances own. Two instances may then
read-modify-write the same visitor row at once, each from its own (possibly cached, possibly
stale) copy of the state; a plain upsert would keep one and lose the other's events.

Every fold state is a join-semilattice (see :mod:`projector.fold`: last-writer-wins
registers, min / max of times, grow-only sets, and provider / source keep the greater
string) and folding an event is joining it in. So the store, holding a lock on the row,
joins the state being committed with the state already stored: whatever either writer saw,
the result is the fold of the union of their events — the same state, byte for byte, as a
single writer folding everything (``tests/projector/test_pg_merge.py`` checks this against
:func:`projector.fold.apply` on generated events).

:data:`FIELDS` names the merge of every field of the merged kinds; a test fails if
``projector/fold.py`` gains a field that is not listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from contracts.state import Erasure
from projector.fold_people import merge_pages
from projector.spells import join_spells
from projector.states import AgentFold, FoldState, Reg, VisitorFold

__all__ = ["FIELDS", "MERGED_KINDS", "join"]

T = TypeVar("T")

#: Aggregate kinds that several partitions (hence several projector instances) write.
MERGED_KINDS: frozenset[str] = frozenset({"visitor", "agent"})


def _same(a: T, b: T) -> T:
    """The aggregate's identity: equal in both states."""
    if a != b:
        raise ValueError(f"cannot merge the states of two aggregates ({a!r} and {b!r})")
    return a


def _greater(a: str | None, b: str | None) -> str | None:
    """Provider and source: the greater string (as ``fold._pick`` does)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


def _register(a: Reg[T] | None, b: Reg[T] | None) -> Reg[T] | None:
    """Last writer wins: the greater stamp ``(at, received_at, log_offset, rank, event_id)``, as
    the fold orders writes; equal stamps are one write."""
    if a is None:
        return b
    if b is None:
        return a
    if (b.at, b.received_at, b.log_offset, b.rank, b.event_id) > (
            a.at, a.received_at, a.log_offset, a.rank, a.event_id):
        return b
    return a


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


def _union(a: frozenset[T], b: frozenset[T]) -> frozenset[T]:
    return a | b if b - a else a


def _erasure(a: Erasure | None, b: Erasure | None) -> Erasure | None:
    """The later erasure (by when it was asked, then id)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if (b.at, b.id) > (a.at, a.id) else a


def _after_erasure(state: VisitorFold) -> VisitorFold:
    """What an erasure leaves of a joined visitor (:mod:`projector.erasure`): its personal
    fields only from webhooks received after the forget. Without this a writer with a stale
    copy from before the forget (another projector's cache) would bring the name back."""
    mark = state.erasure
    if mark is None:
        return state

    def kept(reg: Reg[T] | None) -> Reg[T] | None:
        return reg if reg is None or reg.received_at > mark.at else None

    name, email = kept(state.name), kept(state.email)
    pages = tuple(p for p in state.pages if p.at > mark.at)
    if name is state.name and email is state.email and len(pages) == len(state.pages):
        return state
    return msgspec.structs.replace(state, name=name, email=email, pages=pages)


_Merge = Callable[[Any, Any], Any]

#: Per state type, the merge of each of its fields.
FIELDS: dict[type[FoldState], dict[str, _Merge]] = {
    VisitorFold: {
        "id": _same,
        "provider": _greater,
        "source": _greater,
        "name": _register,
        "email": _register,
        "anonymous": _register,
        "first_seen": _earliest,
        "last_seen": _latest,
        "chats": _union,
        "pages": merge_pages,
        "sessions": _union,
        "identified_as": _register,
        "erasure": _erasure,
    },
    AgentFold: {
        "id": _same,
        "provider": _greater,
        "source": _greater,
        "name": _register,
        "status": _register,
        "spells": join_spells,
    },
}


def join(a: FoldState, b: FoldState) -> FoldState:
    """The least state that includes every event folded into ``a`` or ``b``.

    Commutative, associative and idempotent; ``join(fold(E1), fold(E2)) == fold(E1 + E2)``.
    An erased visitor keeps no personal field received before its erasure, whichever side
    had it.
    Only for the kinds in :data:`MERGED_KINDS` (a TypeError for others).
    """
    cls = type(a)
    merges = FIELDS.get(cls)
    if merges is None or type(b) is not cls:
        raise TypeError(f"cannot merge {cls.__name__} with {type(b).__name__}")
    changes = {name: merge(getattr(a, name), getattr(b, name)) for name, merge in merges.items()}
    joined = msgspec.structs.replace(a, **changes)
    return _after_erasure(joined) if type(joined) is VisitorFold else joined
