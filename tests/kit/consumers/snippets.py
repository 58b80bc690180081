"""Visitor-typed markup for the search snippet tests (SQLite and PostgreSQL backends): each
chat has one message holding markup, an entity or a quote next to the searched word."""

from __future__ import annotations

import html
import re

from contracts.domain import DomainEvent

from .domain_events import chat_events

__all__ = ["HOSTILE", "assert_escaped_snippet", "hostile_chats"]

#: chat id -> the one message of that chat; every one contains the word "refund".
HOSTILE = {
    "x-img": "<img src=x onerror=alert(1)> refund",
    "x-entity": "&lt;script&gt;alert(1)&lt;/script&gt; refund &amp; more",
    "x-adjacent": "<b>refund</b>",
    "x-quote": "'\"><svg onload=alert(1)>refund",
}
_MARK = re.compile(r"<mark>(.*?)</mark>", re.DOTALL)


def hostile_chats() -> list[DomainEvent]:
    events: list[DomainEvent] = []
    for cid, text in HOSTILE.items():
        events += chat_events(cid, subject="Hello", texts=[text])
    return events


def assert_escaped_snippet(snippet: str, text: str, author: str = "Vera Visitor") -> None:
    """``snippet`` is HTML-escaped text with only ``<mark>…</mark>`` (balanced, around the
    searched word) inserted, and what a browser shows is the visitor's text as typed (or a
    part of it: PostgreSQL's headline leaves tags out)."""
    assert [m.lower() for m in _MARK.findall(snippet)] == ["refund"], snippet
    plain = snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in plain and ">" not in plain and '"' not in plain, snippet
    assert html.escape(html.unescape(plain)) == plain, snippet  # every & is an entity
    shown = html.unescape(plain).replace("…", " ").split()
    assert shown and all(word in f"{text}\n{author}" for word in shown), snippet
