"""Parley's view of a visitor or a finished chat → the CRM's JSON, through the configured
field names (pure)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from consumers.crm.config import CrmConfig

__all__ = ["activity_doc", "contact_doc", "contact_version", "transcript"]


def contact_doc(cfg: CrmConfig, *, visitor_id: str, name: str | None, email: str | None,
                source: str) -> dict[str, Any]:
    """The CRM upserts contacts by email when there is one, else by the visitor id."""
    doc: dict[str, Any] = {cfg.contact_field("visitor_id"): visitor_id,
                           cfg.contact_field("source"): source}
    if email:
        doc[cfg.contact_field("email")] = email
    if name:
        doc[cfg.contact_field("name")] = name
    return doc


def contact_version(doc: dict[str, Any]) -> str:
    """A digest of what was sent: an unchanged contact is not sent again."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def transcript(messages: list[tuple[Any, ...]]) -> str:
    """``[2026-01-05 09:00:00Z] Author: text`` lines, in posting order."""
    lines = []
    for posted_at, author, text in messages:
        when = (datetime.fromisoformat(posted_at).strftime("%Y-%m-%d %H:%M:%SZ")
                if posted_at else "?")
        lines.append(f"[{when}] {author or 'unknown'}: {text}")
    return "\n".join(lines)


def activity_doc(cfg: CrmConfig, *, chat_id: str, summary: dict[str, Any],
                 closed_at: datetime | None) -> dict[str, Any]:
    rating = summary.get("rating")
    f = cfg.activity_field
    doc: dict[str, Any] = {
        f("type"): "chat",
        f("chat_id"): chat_id,
        f("source"): summary.get("source"),
        f("subject"): summary.get("subject"),
        f("transcript"): transcript(summary.get("messages", [])),
        f("rating"): orjson.loads(rating) if rating is not None else None,
        f("agent"): summary.get("agent"),
        f("completed"): bool(summary.get("completed")),
        f("closed_at"): closed_at.isoformat() if closed_at else None,
        f("visitor_id"): summary.get("visitor_id"),
    }
    if summary.get("email"):
        doc[f("email")] = summary["email"]
    return doc
