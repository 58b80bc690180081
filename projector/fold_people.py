"""The fold of visitors and agents (see :mod:`projector.fold` for the rules every field
follows), and which agents an event describes: any webhook that names an agent (a chat's
agent, its participants, a message's author) names that agent's state too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from contracts import domain as d
from projector.lww import pick as _pick
from projector.lww import write as _write
from projector.states import MAX_PAGES, AgentFold, Stamp, VisitorFold

__all__ = ["apply_agent", "apply_visitor", "described_agents", "merge_pages"]

_replace = msgspec.structs.replace


def described_agents(ev: Any) -> tuple[d.AgentRef, ...]:
    """The named agents whose rows a chat event names (an id alone names nobody): a
    snapshot's agent and other agents (participants), an agent message's author.

    Not ChatAccepted / ChatAssigned: the normalisers put the agent they name into the
    same webhook's snapshot too (``ChatUpdated.agent`` or ``agents``)."""
    kind = type(ev)
    if kind is d.ChatUpdated:
        agent = ev.agent
        named = () if agent is None or agent.name is None else (agent,)
        if ev.agents:
            return named + tuple(other for other in ev.agents if other.name is not None)
        return named
    if kind is d.MessagePosted:
        author = ev.author
        if author.id is None or author.name is None or author.role != "agent":
            return ()
        return (d.AgentRef(id=author.id, name=author.name),)
    return ()


def _page_key(page: d.PageView) -> tuple[datetime, str, str]:
    return (page.at, page.url, page.title or "")


def _with_page(pages: tuple[d.PageView, ...], page: d.PageView) -> tuple[d.PageView, ...]:
    """The newest :data:`MAX_PAGES` of ``pages`` and ``page``, oldest first."""
    if page in pages:
        return pages
    return merge_pages(pages, (page,))


def merge_pages(a: tuple[d.PageView, ...], b: tuple[d.PageView, ...]) -> tuple[d.PageView, ...]:
    """The newest :data:`MAX_PAGES` of two page histories, oldest first (a union cut to its
    top: commutative, associative, idempotent, so also the merge of concurrent writers)."""
    if not b or set(b) <= set(a):
        return a
    return tuple(sorted(set(a) | set(b), key=_page_key)[-MAX_PAGES:])


def apply_visitor(state: VisitorFold, ev: Any, st: Stamp) -> VisitorFold:
    """A visitor from VisitorSeen; on the provisional (session) side of a link, only
    whom it turned out to be."""
    if type(ev) is not d.VisitorSeen:
        return state
    if state.id != ev.visitor_id:
        if state.id != ev.alias:
            return state
        # The provisional (session) side of a link: it only learns who it turned out to be.
        return _replace(
            state,
            provider=_pick(state.provider, ev.provider),
            source=_pick(state.source, ev.source),
            identified_as=_write(state.identified_as, st, ev.visitor_id),
        )
    sessions, alias = state.sessions, ev.alias
    if alias is not None and alias not in sessions and alias != state.id:
        sessions = sessions | {alias}
    chats = state.chats
    chat_id = ev.chat_id
    if chat_id is not None and chat_id not in chats:
        chats = chats | {chat_id}
    name, email, anonymous, page = ev.name, ev.email, ev.anonymous, ev.page
    first, last = state.first_seen, state.last_seen
    at = st[0]
    return _replace(
        state,
        provider=_pick(state.provider, ev.provider),
        source=_pick(state.source, ev.source),
        name=state.name if name is None else _write(state.name, st, name),
        email=state.email if email is None else _write(state.email, st, email),
        anonymous=(state.anonymous if anonymous is None
                   else _write(state.anonymous, st, anonymous)),
        first_seen=at if first is None or first > at else first,  # min
        last_seen=at if last is None or last < at else last,  # max
        chats=chats,
        pages=state.pages if page is None else _with_page(state.pages, page),
        sessions=sessions,
    )


def apply_agent(state: AgentFold, ev: Any, st: Stamp) -> AgentFold:
    """An agent's status and name from AgentStatusChanged; its name also from any chat
    event that describes it (:func:`described_agents`): the latest description wins."""
    if type(ev) is not d.AgentStatusChanged:
        name = next((a.name for a in described_agents(ev) if a.id == state.id), None)
        if name is None:
            return state
        provider, source = _pick(state.provider, ev.provider), _pick(state.source, ev.source)
        return _replace(state, provider=provider, source=source,
                        name=_write(state.name, st, name))
    name = ev.name
    return _replace(
        state,
        provider=_pick(state.provider, ev.provider),
        source=_pick(state.source, ev.source),
        name=state.name if name is None else _write(state.name, st, name),
        status=_write(state.status, st, ev.status),
    )
