"""Which ids identify a Natterly chat and visitor, and status comparison.

Natterly sends no event id and documents no visitor id, so Parley derives them.
The rules live here once; the receiver (record keys, with minimal Structs) and
the normaliser (domain events, with the full Structs) both call them, which is
why they accept anything shaped like the Structs (the small Protocols below).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

__all__ = [
    "SESSION_VISITOR_PREFIX",
    "chat_id_of",
    "is_session_visitor",
    "session_visitor_id_of",
    "status_is",
    "visitor_id_of",
]

#: When only a session identifies a visitor, the visitor id is this prefix plus
#: the session id, so it can never collide with a real visitor uuid.
SESSION_VISITOR_PREFIX: Final = "session:"


def status_is(value: str | None, *expected: str) -> bool:
    """Case-insensitive status comparison: ``status_is(chat.status, "closed")``."""
    if value is None:
        return False
    folded = value.casefold()
    return any(folded == candidate.casefold() for candidate in expected)


class _HasUuid(Protocol):
    @property
    def uuid(self) -> str | None: ...


class _SessionLike(_HasUuid, Protocol):
    @property
    def visitor(self) -> _HasUuid | None: ...


class _ChatLike(_HasUuid, Protocol):
    @property
    def visitor(self) -> _HasUuid | None: ...

    @property
    def session(self) -> _SessionLike | None: ...

    @property
    def session_id(self) -> str | None: ...


class _InChat(Protocol):
    @property
    def chat(self) -> str | None: ...


def chat_id_of(chat: _HasUuid | None, messages: Iterable[_InChat] | None) -> str | None:
    """The chat a Natterly payload is about: ``chat.uuid``, else the first
    message's ``chat`` (used by the receiver's keys and by the normaliser)."""
    if chat is not None and chat.uuid:
        return chat.uuid
    for message in messages or ():
        if message.chat:
            return message.chat
    return None


def visitor_id_of(
    *,
    visitor: _HasUuid | None = None,
    session: _SessionLike | None = None,
    session_id: str | None = None,
    chat: _ChatLike | None = None,
) -> str | None:
    """The id Parley uses for a Natterly visitor, from whatever the payload holds.

    Natterly documents no visitor id, so the rule is: the first visitor
    ``uuid`` found in ``payload.visitor``, ``payload.session.visitor``,
    ``payload.chat.visitor``, ``payload.chat.session.visitor``; failing that,
    ``"session:"`` + the first session id found in ``payload.session.uuid``,
    ``payload.session_id``, ``payload.chat.session.uuid``,
    ``payload.chat.session_id`` (until Natterly names a visitor, its ChatBox
    session is all that identifies it; the prefix keeps the two id spaces
    apart); failing that, None. The receiver (keys) and the normaliser (events)
    both call this, with typed Structs of different depth.
    """
    chat_session = chat.session if chat is not None else None
    for holder in (
        visitor,
        session.visitor if session is not None else None,
        chat.visitor if chat is not None else None,
        chat_session.visitor if chat_session is not None else None,
    ):
        if holder is not None and holder.uuid:
            return holder.uuid
    return session_visitor_id_of(session=session, session_id=session_id, chat=chat)


def session_visitor_id_of(
    *,
    session: _SessionLike | None = None,
    session_id: str | None = None,
    chat: _ChatLike | None = None,
) -> str | None:
    """``"session:"`` + the first session id the payload holds (in the order of
    :func:`visitor_id_of`), whether or not it names the visitor's uuid too; else None.

    When a webhook gives both, the visitor once known only by this session is the visitor
    of that uuid: the normaliser links the two (``VisitorSeen.alias``)."""
    chat_session = chat.session if chat is not None else None
    for candidate in (
        session.uuid if session is not None else None,
        session_id,
        chat_session.uuid if chat_session is not None else None,
        chat.session_id if chat is not None else None,
    ):
        if candidate:
            return SESSION_VISITOR_PREFIX + candidate
    return None


def is_session_visitor(visitor_id: str) -> bool:
    """True for a provisional visitor id derived from a session (it gives way to a real
    id: a chat's visitor moves from it to the uuid, never back)."""
    return visitor_id.startswith(SESSION_VISITOR_PREFIX)
