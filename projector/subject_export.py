"""An access request (``parley visitors export``, ``GET /api/visitors/{id}/export``):
everything the projection holds about a data subject, as one JSON document.

The projection holds the decrypted state of every visitor and chat, so this is what Parley
can read about the subject: the visitor (merged with its provisional session visitors, as
``GET /api/visitors/{id}`` shows it), each session visitor as stored, every chat of theirs
with all its messages, and the pages they viewed. An erased subject exports what is left:
facts without personal fields, each marked with its ``erasure``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from contracts.domain import PageView
from contracts.state import ChatState, MessageState, VisitorState
from projector.forget import Subject
from projector.store import Store
from projector.views import merged_visitor

__all__ = ["ChatExport", "SubjectExport", "export_subject"]

_VISITOR = msgspec.json.Decoder(VisitorState)
_CHAT = msgspec.json.Decoder(ChatState)
_MESSAGE = msgspec.json.Decoder(MessageState)


class ChatExport(msgspec.Struct, frozen=True, kw_only=True):
    """One chat of the subject with every message of it."""

    chat: ChatState
    messages: list[MessageState]


class SubjectExport(msgspec.Struct, frozen=True, kw_only=True):
    """The export document (docs/privacy.md, "Export")."""

    subject: str
    exported_at: datetime
    projection: str
    visitor: VisitorState | None
    sessions: list[VisitorState]
    chats: list[ChatExport]
    page_views: tuple[PageView, ...]


async def export_subject(store: Store, subject: Subject) -> SubjectExport:
    """The export of a resolved ``subject`` (:func:`projector.forget.resolve`), read from the
    live copy."""
    live = await store.live_projection()
    assert live is not None  # resolve() found the subject in it
    visitors = []
    for visitor_id in subject.visitors:
        raw = await store.get_view(live, "visitor", visitor_id)
        if raw is not None:
            visitors.append(_VISITOR.decode(raw))
    visitor = merged_visitor(visitors[0], visitors[1:]) if visitors else None
    chats = []
    for chat_id in subject.chats:
        raw = await store.get_view(live, "chat", chat_id)
        if raw is None:
            continue
        messages: list[MessageState] = []
        cursor = None
        while True:
            views, cursor = await store.list_messages(live, chat_id, limit=500, cursor=cursor)
            messages.extend(_MESSAGE.decode(v) for v in views)
            if cursor is None:
                break
        chats.append(ChatExport(chat=_CHAT.decode(raw), messages=messages))
    return SubjectExport(subject=subject.subject, exported_at=datetime.now(UTC), projection=live,
                         visitor=visitor, sessions=visitors[1:], chats=chats,
                         page_views=() if visitor is None else visitor.pages)
