"""The fold of visitors and agents (see :mod:`projector.fold` for the rules every field
follows), and which agents an event describes: any webhook that names an agent (a chat's
agent, its participants, a message's author) names that agent's state too.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts import domain as d
from projector.lww import grow, pick, write
from projector.spells import add_change
from projector.states import MAX_PAGES, AgentFold, Stamp, VisitorFold

__all__ = ["apply_agent", "apply_visitor", "described_agents", "merge_pages"]

_replace = msgspec.structs.replace


def described_agents(ev: d.DomainEvent) -> tuple[d.AgentRef, ...]:
    """The named agents whose rows a chat event names (an id alone names nobody): a
    snapshot's agent and other agents (participants), an agent message's author.

    Not ChatAccepted / ChatAssigned: the normalisers put the agent they name into the
    same webhook's snapshot too (``ChatUpdated.agent`` or ``agents``)."""
    match ev:
        case d.MessagePosted(author=author):
            if author.role != "agent" or author.id is None or author.name is None:
                return ()
            return (d.AgentRef(id=author.id, name=author.name),)
        case d.ChatUpdated(agent=agent, agents=others):
            return tuple([a for a in (agent, *others) if a is not None and a.name is not None])
        case _:
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


def apply_visitor(state: VisitorFold, ev: d.DomainEvent, st: Stamp) -> VisitorFold:
    """A visitor from VisitorSeen; on the provisional (session) side of a link, only
    whom it turned out to be."""
    match ev:
        case d.VisitorSeen(visitor_id=state.id):
            return _seen(state, ev, st)
        case d.VisitorSeen(alias=state.id):
            # The provisional (session) side of a link: it only learns who it turned out to be.
            return _replace(
                state,
                provider=pick(state.provider, ev.provider),
                source=pick(state.source, ev.source),
                identified_as=write(state.identified_as, st, ev.visitor_id),
            )
        case _:
            return state


def _seen(state: VisitorFold, ev: d.VisitorSeen, st: Stamp) -> VisitorFold:
    """What VisitorSeen tells the visitor it names: identity (LWW), first and last seen
    (min, max), its chats, pages and session aliases (grow-only)."""
    sessions, chats = state.sessions, state.chats
    if ev.alias is not None and ev.alias != state.id:
        sessions = grow(sessions, ev.alias)
    if ev.chat_id is not None:
        chats = grow(chats, ev.chat_id)
    return _replace(
        state,
        provider=pick(state.provider, ev.provider),
        source=pick(state.source, ev.source),
        name=state.name if ev.name is None else write(state.name, st, ev.name),
        email=state.email if ev.email is None else write(state.email, st, ev.email),
        anonymous=(state.anonymous if ev.anonymous is None
                   else write(state.anonymous, st, ev.anonymous)),
        first_seen=_earlier(state.first_seen, st[0]),
        last_seen=_later(state.last_seen, st[0]),
        chats=chats,
        pages=state.pages if ev.page is None else _with_page(state.pages, ev.page),
        sessions=sessions,
    )


def _earlier(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or a > b else a


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or a < b else a


def apply_agent(state: AgentFold, ev: d.DomainEvent, st: Stamp) -> AgentFold:
    """An agent's status, its status changes and name from AgentStatusChanged; its name
    also from any chat event that describes it (:func:`described_agents`): the latest
    description wins."""
    match ev:
        case d.AgentStatusChanged():
            return _replace(
                state,
                provider=pick(state.provider, ev.provider),
                source=pick(state.source, ev.source),
                name=state.name if ev.name is None else write(state.name, st, ev.name),
                status=write(state.status, st, ev.status),
                spells=add_change(state.spells, st[0], ev.status),
            )
        case _:
            for agent in described_agents(ev):
                if agent.id == state.id:
                    return _replace(state, provider=pick(state.provider, ev.provider),
                                    source=pick(state.source, ev.source),
                                    name=write(state.name, st, agent.name))
            return state
