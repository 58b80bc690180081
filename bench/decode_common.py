"""Decode benchmark: what the json and pydantic baselines share (same rules as contracts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts import domain as d
from contracts.chatshipper import parse_resource_url
from contracts.envelope import Envelope

RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SOURCE = "bench"
WS = b" \t\n\r"
Result = tuple[Envelope, list[d.DomainEvent]]

N_CHAT_EVENTS = frozenset((
    "ChatInitiated", "ChatAccepted", "ChatAssigned", "ChatCompleted", "ChatClosed", "ChatIgnored",
    "ChatIdle", "ChatTranscriptSent", "ChatRated",
))  # fmt: skip
N_VISITOR_EVENTS = frozenset(("VisitorCreated", "SessionRegistration"))
ROLES: dict[str, d.AuthorRole] = {"contact": "visitor", "agent": "agent", "bot": "bot"}
CONTROL_TYPES = frozenset(("command", "status"))


def unix(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def iso(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def first_uuid(*holders: Any) -> str | None:
    for holder in holders:
        uuid = holder.get("uuid") if isinstance(holder, dict) else getattr(holder, "uuid", None)
        if uuid:
            return uuid  # type: ignore[no-any-return]
    return None


def n_author(event: Any, by_visitor: Any, kind: str, has_author: bool) -> d.AuthorRole:
    if event:
        return "system"
    if by_visitor is True:
        return "visitor"
    if by_visitor is False:
        return "bot" if "bot" in kind else "agent"
    if kind in ("user", "agent"):
        return "agent"
    if "bot" in kind:
        return "bot"
    return "visitor" if has_author else "system"


def g(obj: Any, key: str) -> Any:
    """obj[key] when obj is a dict, else None (a missing object is "no data")."""
    return obj.get(key) if isinstance(obj, dict) else None


def cs_ref_id(url: str | None, collection: str) -> str | None:
    """The id in an activity URL of ``collection`` (parsed only when needed, as contracts does)."""
    ref = cs_ref(url)
    return ref[1] if ref and ref[0] == collection else None


def cs_ref(url: str | None) -> tuple[str, str] | None:
    ref = parse_resource_url(url)
    return (ref.collection, ref.id) if ref else None
