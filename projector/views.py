"""From fold states to what the query API serves: JSON views and the rows that index them.

Pure (no I/O). A view is the ``contracts.state`` shape of DESIGN.md; a :class:`Row` is
what a :class:`~projector.store.Store` keeps per aggregate: the encoded fold state (for
the next read-modify-write), the view's JSON bytes (sent over HTTP as they are), and
the few columns the listings filter and sort on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import msgspec

from contracts.state import AgentState, ChatState, MessageState, VisitorState
from projector.fold import (
    AgentFold,
    AggregateRef,
    ChatFold,
    FoldState,
    MessageFold,
    VisitorFold,
    chat_status,
    encode_state,
)

__all__ = ["Row", "View", "row_for", "to_view"]

View: TypeAlias = ChatState | MessageState | VisitorState | AgentState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
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


def _micros(at: datetime) -> int:
    micros = int((at - _EPOCH) // _MICROSECOND)
    return 0 if micros < 0 else min(micros, _KEY_MAX)


def _chat_view(s: ChatFold) -> ChatState:
    status = chat_status(s)
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
        agent=None if s.agent is None else s.agent.value,
        visitor=None if s.visitor is None else s.visitor.value,
        site=None if s.site is None else s.site.value,
        initiated_at=s.initiated_at,
        accepted_at=s.accepted_at,
        # A chat reopened after closing (a later start or accept) has no closing time.
        closed_at=s.closed.value if status == "closed" and s.closed is not None else None,
        last_message_at=s.last_message_at,
        message_count=len(s.messages - s.deleted) if s.deleted else len(s.messages),
        rating=None if s.rating is None else s.rating.value,
        location=None if s.location is None else s.location.value,
        browser=None if s.browser is None else s.browser.value,
        platform=None if s.platform is None else s.platform.value,
    )


def _message_view(s: MessageFold) -> MessageState:
    return MessageState(
        id=s.id,
        chat_id=s.chat_id,
        text=None if s.text is None or s.deleted_at is not None else s.text.value,
        author=None if s.author is None else s.author.value,
        posted_at=s.posted_at,
        edited_at=s.edited_at,
        deleted=s.deleted_at is not None,
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
    )


def _agent_view(s: AgentFold) -> AgentState:
    return AgentState(
        id=s.id,
        name=None if s.name is None else s.name.value,
        status=None if s.status is None else s.status.value,  # type: ignore[arg-type]
        since=None if s.status is None else s.status.at,
    )


def to_view(ref: AggregateRef, state: FoldState) -> View:
    """The public shape (``contracts.state``) of a fold state."""
    match state:
        case ChatFold():
            return _chat_view(state)
        case MessageFold():
            return _message_view(state)
        case VisitorFold():
            return _visitor_view(state)
        case AgentFold():
            return _agent_view(state)
    raise TypeError(f"not a fold state of {ref}: {type(state).__name__}")


def row_for(ref: AggregateRef, state: FoldState) -> Row:
    """The row a store keeps for ``ref``: encoded state, JSON view and listing columns."""
    view = to_view(ref, state)
    data = _JSON.encode(view)
    encoded = encode_state(state)
    match state:
        case ChatFold():
            at = state.active_at
            inverted = _KEY_MAX - (_micros(at) if at is not None else 0)
            agent = None if state.agent is None or state.agent.value is None else state.agent.value.id
            return Row(
                kind="chat",
                id=ref.id,
                state=encoded,
                view=data,
                chat_id=ref.id,
                status=chat_status(state),
                source=state.source,
                agent_id=agent,
                sort_key=f"{inverted:0{_KEY_DIGITS}d}",
            )
        case MessageFold():
            at = state.posted_at or state.edited_at or state.deleted_at
            return Row(
                kind="message",
                id=ref.id,
                state=encoded,
                view=data,
                chat_id=state.chat_id,
                source=state.source,
                sort_key=f"{_micros(at) if at is not None else 0:0{_KEY_DIGITS}d}",
            )
        case VisitorFold():
            return Row(
                kind="visitor",
                id=ref.id,
                state=encoded,
                view=data,
                source=state.source,
                sort_key=ref.id,
            )
        case AgentFold():
            return Row(
                kind="agent",
                id=ref.id,
                state=encoded,
                view=data,
                status=None if state.status is None else state.status.value,
                source=state.source,
                sort_key=ref.id,
            )
    raise TypeError(f"not a fold state of {ref}: {type(state).__name__}")
