"""Provider-neutral domain events of whole chats, for the search index tests (SQLite and
PostgreSQL backends fed the same conversations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.domain import (
    AgentRef,
    Author,
    ChatAccepted,
    ChatClosed,
    ChatStarted,
    ChatUpdated,
    DepartmentRef,
    DomainEvent,
    MessageEdited,
    MessagePosted,
    SiteRef,
    VisitorRef,
)

__all__ = ["T", "chat_events", "common", "edited_note"]

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def common(eid: str, at: datetime, source: str = "acme") -> dict[str, object]:
    return {"event_id": eid, "occurred_at": at, "provider": "natterly", "source": source}


def chat_events(cid: str, *, subject: str, texts: list[str], at: datetime = T, source: str = "acme",
          agent: str | None = None, closed: bool = False, visitor: str = "Vera Visitor"
          ) -> list[DomainEvent]:
    events: list[DomainEvent] = [
        ChatStarted(**common(f"{cid}-s", at, source), chat_id=cid, initiated_at=at),
        ChatUpdated(**common(f"{cid}-u", at, source), chat_id=cid, subject=subject,
                    department=DepartmentRef(id="d1", name="Billing"),
                    site=SiteRef(id="s1", name="Webshop"), visitor=VisitorRef(id="v", name=visitor)),
    ]
    for i, text in enumerate(texts):
        events.append(MessagePosted(**common(f"{cid}-m{i}", at + timedelta(minutes=i), source),
                                    chat_id=cid, message_id=f"m{i}", text=text,
                                    author=Author(role="visitor", name=visitor),
                                    posted_at=at + timedelta(minutes=i)))
    if agent:
        events.append(ChatAccepted(**common(f"{cid}-a", at, source), chat_id=cid,
                                   agent=AgentRef(id=agent.lower(), name=agent)))
    if closed:
        events.append(ChatClosed(**common(f"{cid}-c", at + timedelta(hours=1), source),
                                 chat_id=cid, closed_at=at + timedelta(hours=1)))
    return events


def edited_note(cid: str) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """An agent-only note in chat ``cid`` ("the customer is a walrus"), and its edit
    ("the customer is a narwhal") as ChatShipper's ``message.update`` sends it: without the
    backchannel flag. Both texts must stay unsearchable."""
    note = MessagePosted(**common(f"{cid}-note", T + timedelta(minutes=5)), chat_id=cid,
                         message_id="note", text="the customer is a walrus",
                         author=Author(role="agent", name="Ann"), posted_at=T + timedelta(minutes=5),
                         internal=True, message_type="chat")
    edit = MessageEdited(**common(f"{cid}-edit", T + timedelta(minutes=6)), chat_id=cid,
                         message_id="note", text="the customer is a narwhal",
                         edited_at=T + timedelta(minutes=6))
    return [note], [edit]
