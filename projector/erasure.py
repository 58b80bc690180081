"""Erasing a data subject from the projection: what a forgotten record does to a state.

Pure (no I/O). A forgotten record (:mod:`contracts.forgotten`) names one chat (with its
messages) or one visitor; :func:`applications` turns it into (aggregate, :class:`Forget`)
pairs that the :class:`~projector.folder.Folder` applies in log order with the aggregate's
other events, through :func:`erasing`. Because the record is in the log, every replay erases
at the same place: a rebuild after a forget yields the erased state even where a key
survived, and with the keys gone (docs/privacy.md) nothing before it could be read anyway.

What an erased state keeps (the facts) and loses (the personal fields):

* chat: keeps ids, times, status, flags, department, site, browser, platform, agent and
  agents, rating, counts and metrics; loses its subject, location and the visitor's name.
* message: keeps ids, times, author role and id, flags; loses its text and its author's
  name (an agent's is still shown: the query API names authors from the chat's agents).
* visitor: keeps id, anonymity, first/last seen, chats and sessions; loses name, email and
  pages.

These are the facts a sealed record keeps readable once its key is gone
(:mod:`parley.privacy.facts`), so a rebuild after a forget folds to the same states as the
live copy erased (and its verification finds no difference).

The erasure is not part of the order-independent fold (:mod:`projector.fold`): events
that come later in the log (a late webhook of the chat) are folded on top of the erased
state as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from contracts import domain as d
from contracts.forgotten import Forgotten
from contracts.state import Erasure
from projector.states import (
    STATE_TYPE,
    AggregateRef,
    ChatFold,
    FoldState,
    MessageFold,
    Reg,
    VisitorFold,
    message_ref,
)

__all__ = ["Forget", "applications", "erase", "erasing"]

_replace = msgspec.structs.replace


class Forget(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One aggregate's share of a forgotten record, as the folder applies it. ``source``
    and ``chat_id`` are there for the ownership check (:mod:`projector.owners`): another
    source's forget changes nothing."""

    event_id: str
    source: str
    chat_id: str
    erasure: Erasure


def applications(forgotten: Forgotten, event_id: str) -> list[tuple[AggregateRef, Forget]]:
    """The aggregates a forgotten record erases (a chat: with its messages), each with the
    :class:`Forget` to apply to it."""
    forget = Forget(event_id=event_id, source=forgotten.source, chat_id=forgotten.id,
                    erasure=Erasure(id=forgotten.erasure_id, at=forgotten.requested_at))
    if forgotten.kind == "visitor":
        return [(AggregateRef("visitor", forgotten.id), forget)]
    return [(AggregateRef("chat", forgotten.id), forget),
            *((message_ref(forgotten.id, m), forget) for m in forgotten.messages)]


def erase(ref: AggregateRef, state: FoldState | None, forget: Forget) -> FoldState:
    """``state`` without its personal fields, marked with the erasure (see the module doc)."""
    if state is None:  # unknown here (e.g. a message this copy never saw): only the mark
        if ref.kind == "message":
            chat_id, _, message_id = ref.id.partition("/")
            return MessageFold(chat_id=chat_id, id=message_id, erasure=forget.erasure)
        return STATE_TYPE[ref.kind](id=ref.id, erasure=forget.erasure)  # type: ignore[call-arg]
    mark = forget.erasure
    if type(state) is ChatFold:
        return _replace(state, subject=None, location=None, visitor_name=None,
                        visitor=_nameless(state.visitor),
                        visitor_session=_nameless(state.visitor_session), erasure=mark)
    if type(state) is MessageFold:
        author = state.author
        if author is not None and author.value.name is not None:
            author = _replace(author, value=_replace(author.value, name=None))
        return _replace(state, text=None, author=author, erasure=mark)
    if type(state) is VisitorFold:
        return _replace(state, name=None, email=None, pages=(), erasure=mark)
    return state  # agents are not data subjects here


def _nameless(reg: Reg[d.VisitorRef] | None) -> Reg[d.VisitorRef] | None:
    if reg is None or reg.value.name is None:
        return reg
    return _replace(reg, value=_replace(reg.value, name=None))


ApplyFn = Callable[[AggregateRef, FoldState | None, Any], FoldState]


def erasing(apply_fn: ApplyFn) -> ApplyFn:
    """``apply_fn`` that also applies :class:`Forget` (by :func:`erase`); the folder uses it
    only for batches with a forgotten record, so the hot path pays nothing."""

    def apply(ref: AggregateRef, state: FoldState | None, event: Any) -> FoldState:
        if type(event) is Forget:
            return erase(ref, state, event)
        return apply_fn(ref, state, event)

    return apply
