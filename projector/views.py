"""From fold states to what the query API serves: JSON views and the rows that index them.

Pure (no I/O). A view is a ``contracts.state`` shape (docs/architecture.md); a :class:`Row` is
what a :class:`~projector.store.Store` keeps per aggregate: the encoded fold state (for
the next read-modify-write), the view's JSON bytes (sent over HTTP as they are), and
the few columns the listings filter and sort on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeAlias

import msgspec

from contracts.domain import AgentRef, VisitorRef
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from projector.analytics import agent_metrics, chat_metrics
from projector.fold_people import merge_pages
from projector.rollups import fact_for
from projector.states import (
    AgentFold,
    AggregateRef,
    ChatFold,
    FoldState,
    MessageFold,
    Reg,
    VisitorFold,
    chat_status,
    encode_state,
)

__all__ = ["Row", "View", "merged_visitor", "named_authors", "row_for", "to_view"]

View: TypeAlias = ChatState | MessageState | VisitorState | AgentState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_DIGITS = 18  # 9999-12-31 in microseconds since the epoch has 18 digits
_KEY_MAX = 10**_KEY_DIGITS - 1
_JSON = msgspec.json.Encoder()


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One aggregate as a store keeps it.

    ``sort_key`` orders listings ascending, ties broken by ``id``: for chats it is the
    *inverted* time of last activity (so ascending = most recent first), for messages
    the time posted. Both are fixed-width digit strings, so every store can compare
    them as plain text.
    """

    kind: str
    id: str
    state: bytes
    view: bytes
    chat_id: str | None = None
    status: str | None = None
    source: str | None = None
    agent_id: str | None = None
    sort_key: str = ""
    #: The log positions ``state`` covers, when known in memory (the folder sets them; they
    #: are also inside ``state``, see projector.outbox): not a store column.
    covers: tuple[tuple[str, int, int], ...] = ()
    #: A chat's contribution to the report roll-ups (:func:`projector.rollups.fact_for`;
    #: empty for other kinds) and, while it waits, since when (microseconds since the
    #: epoch): the stores keep both per chat, beside the row (docs/analytics.md).
    fact: bytes = b""
    waiting_since: int | None = None
    #: The provider of a chat, message or visitor, when known in memory (the folder's rows
    #: have it; rows read back from a store do not): whose data subject's key seals its
    #: published state (projector.state_publisher). Not a store column.
    provider: str | None = None


def _micros(at: datetime) -> int:
    # Exact integer microseconds since the epoch; plain int arithmetic on the timedelta's
    # fields is twice as fast as ``// timedelta(microseconds=1)`` (runs for every row).
    delta = at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return 0 if micros < 0 else min(micros, _KEY_MAX)


def _key(n: int) -> str:
    """``n`` as a fixed-width (``_KEY_DIGITS``) digit string."""
    return f"{n:018d}"  # 018: _KEY_DIGITS, written out (a nested format spec is slower)


def _chat_view(s: ChatFold) -> ChatState:
    status = chat_status(s)
    live = s.messages - s.deleted if s.deleted else s.messages
    internal = len(live & s.internal) if s.internal else 0
    # A chat reopened after closing (a later start or accept) has no closing time.
    closed_at = _closed_at(s) if status == "closed" else None
    return ChatState(
        id=s.id,
        provider=s.provider,
        source=s.source,
        status=status,  # type: ignore[arg-type]  # only the fold's four words are ever written
        ignored=s.ignored,
        completed=s.completed,
        transcript_sent=s.transcript_sent,
        subject=None if s.subject is None else s.subject.value,
        department=None if s.department is None else s.department.value,
        agent=_agent(s),
        visitor=_visitor(s),
        site=None if s.site is None else s.site.value,
        initiated_at=s.initiated_at,
        accepted_at=s.accepted_at,
        closed_at=closed_at,
        last_message_at=s.last_message_at,
        message_count=len(live) - internal,
        internal_count=internal,
        rating=None if s.rating is None else s.rating.value,
        location=None if s.location is None else s.location.value,
        browser=None if s.browser is None else s.browser.value,
        platform=None if s.platform is None else s.platform.value,
        provider_status=None if s.provider_status is None else s.provider_status.value,
        type=s.chat_type,
        agents=_agents(s.agent_names) if s.agent_names else (),
        metrics=chat_metrics(s, closed_at),
        erasure=s.erasure,
    )


def _agents(names: dict[str, Reg[str]]) -> tuple[AgentRef, ...]:
    """Every agent the chat's webhooks named, by id, with the last name each was given."""
    return tuple(AgentRef(id=agent_id, name=reg.value) for agent_id, reg in sorted(names.items()))


def _agent(s: ChatFold) -> AgentRef | None:
    """The chat's agent, named by the last event that named them if this one did not."""
    agent = None if s.agent is None else s.agent.value
    if agent is None or agent.name is not None or agent.id not in s.agent_names:
        return agent
    return AgentRef(id=agent.id, name=s.agent_names[agent.id].value)


def _visitor(s: ChatFold) -> VisitorRef | None:
    """The chat's visitor: the last real id given (else the last session id), with the
    latest name and anonymity given by any description (with or without an id)."""
    ref, name, anonymous = s.visitor or s.visitor_session, s.visitor_name, s.visitor_anonymous
    if name is None and anonymous is None:
        return None if ref is None else ref.value
    base = VisitorRef() if ref is None else ref.value
    return VisitorRef(id=base.id, name=base.name if name is None else name.value,
                      anonymous=base.anonymous if anonymous is None else anonymous.value)


def _closed_at(s: ChatFold) -> datetime | None:
    """When the chat closed: as the latest chat data says, else as its close event said."""
    if s.closed_at is not None:
        return s.closed_at.value
    return None if s.closed is None else s.closed.value


def _message_view(s: MessageFold) -> MessageState:
    return MessageState(
        id=s.id,
        chat_id=s.chat_id,
        text=None if s.text is None or s.deleted_at is not None else s.text.value,
        author=None if s.author is None else s.author.value,
        posted_at=s.posted_at,
        edited_at=s.edited_at,
        deleted=s.deleted_at is not None,
        internal=s.internal,
        message_type=s.message_type,
        erasure=s.erasure,
    )


def _visitor_view(s: VisitorFold) -> VisitorState:
    return VisitorState(
        id=s.id,
        name=None if s.name is None else s.name.value,
        email=None if s.email is None else s.email.value,
        anonymous=None if s.anonymous is None else s.anonymous.value,
        first_seen=s.first_seen,
        last_seen=s.last_seen,
        chats=tuple(sorted(s.chats)),
        pages=s.pages,
        sessions=tuple(sorted(s.sessions)),
        identified_as=None if s.identified_as is None else s.identified_as.value,
        erasure=s.erasure,
    )


def named_authors(messages: list[MessageState], agents: Iterable[AgentRef]) -> list[MessageState]:
    """``messages`` with each author the webhook named only by id given the name the chat
    knows for that id (``ChatState.agents``): authors are never nameless when an id is
    known. Read-time, because the name may arrive after the message."""
    names = {agent.id: agent.name for agent in agents if agent.name is not None}
    out = []
    for message in messages:
        author = message.author
        if author is not None and author.name is None and author.id in names:
            author = msgspec.structs.replace(author, name=names[author.id])
            message = msgspec.structs.replace(message, author=author)
        out.append(message)
    return out


def merged_visitor(visitor: VisitorState, sessions: Iterable[VisitorState]) -> VisitorState:
    """``visitor`` as one with the provisional (session) visitors it was known by: their
    chats and pages are its too, first / last seen span them all, and what the identified
    visitor does not say of itself (name, email, anonymity) the latest session does.

    Read-time, because the two live in different partitions (docs/projector.md)."""
    chats, pages = set(visitor.chats), visitor.pages
    first, last = visitor.first_seen, visitor.last_seen
    name, email, anonymous = visitor.name, visitor.email, visitor.anonymous
    ordered = sorted(sessions, key=_seen_last)
    for session in ordered:
        chats.update(session.chats)
        pages = merge_pages(pages, session.pages)
        first = _earliest(first, session.first_seen)
        last = _latest(last, session.last_seen)
    for session in reversed(ordered):
        name = session.name if name is None else name
        email = session.email if email is None else email
        anonymous = session.anonymous if anonymous is None else anonymous
    return msgspec.structs.replace(
        visitor, chats=tuple(sorted(chats)), pages=pages, first_seen=first, last_seen=last,
        name=name, email=email, anonymous=anonymous)


def _seen_last(visitor: VisitorState) -> tuple[datetime, str]:
    return (visitor.last_seen or _EPOCH, visitor.id)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _agent_view(s: AgentFold) -> AgentState:
    return AgentState(
        id=s.id,
        name=None if s.name is None else s.name.value,
        status=None if s.status is None else s.status.value,  # type: ignore[arg-type]
        since=None if s.status is None else s.status.at,
        metrics=agent_metrics(s),
    )


def to_view(ref: AggregateRef, state: FoldState) -> View:
    """The public shape (``contracts.state``) of a fold state."""
    build = _VIEWS.get(type(state))
    if build is None:
        raise TypeError(f"not a fold state of {ref}: {type(state).__name__}")
    return build(state)


_VIEWS: dict[type, Callable[[Any], View]] = {
    ChatFold: _chat_view,
    MessageFold: _message_view,
    VisitorFold: _visitor_view,
    AgentFold: _agent_view,
}


def _chat_row(ref: AggregateRef, state: ChatFold) -> Row:
    at = state.active_at
    agent = state.agent
    view = _chat_view(state)
    waiting = view.status == "waiting" and view.initiated_at is not None
    return Row(
        kind="chat",
        id=ref.id,
        state=encode_state(state),
        view=_JSON.encode(view),
        fact=fact_for(view, state.holders),
        waiting_since=_micros(view.initiated_at) if waiting and view.initiated_at else None,
        chat_id=ref.id,
        status=chat_status(state),
        source=state.source,
        agent_id=None if agent is None or agent.value is None else agent.value.id,
        sort_key=_key(_KEY_MAX - (_micros(at) if at is not None else 0)),
        provider=state.provider,
    )


def _message_row(ref: AggregateRef, state: MessageFold) -> Row:
    at = state.posted_at or state.edited_at or state.deleted_at
    return Row(
        kind="message",
        id=ref.id,
        state=encode_state(state),
        view=_JSON.encode(_message_view(state)),
        chat_id=state.chat_id,
        source=state.source,
        sort_key=_key(_micros(at) if at is not None else 0),
        provider=state.provider,
    )


def _visitor_row(ref: AggregateRef, state: VisitorFold) -> Row:
    return Row(
        kind="visitor",
        id=ref.id,
        state=encode_state(state),
        view=_JSON.encode(_visitor_view(state)),
        source=state.source,
        sort_key=ref.id,
        provider=state.provider,
    )


def _agent_row(ref: AggregateRef, state: AgentFold) -> Row:
    return Row(
        kind="agent",
        id=ref.id,
        state=encode_state(state),
        view=_JSON.encode(_agent_view(state)),
        status=None if state.status is None else state.status.value,
        source=state.source,
        sort_key=ref.id,
    )


# Dispatch on the exact type (rows are built for every changed aggregate of every batch;
# isinstance() against a msgspec Struct class is slow on a miss).
_ROWS: dict[type, Callable[[AggregateRef, Any], Row]] = {
    ChatFold: _chat_row,
    MessageFold: _message_row,
    VisitorFold: _visitor_row,
    AgentFold: _agent_row,
}


def row_for(ref: AggregateRef, state: FoldState) -> Row:
    """The row a store keeps for ``ref``: encoded state, JSON view and listing columns."""
    build = _ROWS.get(type(state))
    if build is None:
        raise TypeError(f"not a fold state of {ref}: {type(state).__name__}")
    return build(ref, state)
