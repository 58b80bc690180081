"""Search requests and results, and the one SQL query that answers them (runs on the
index's worker thread)."""

from __future__ import annotations

import base64
import html
import re
import sqlite3
from datetime import UTC, datetime

import msgspec

from contracts.errors import ContractError
from contracts.params import parse_uint

__all__ = ["HIT_END", "HIT_START", "MIN_PREFIX_CHARS", "SearchHit", "SearchPage", "SearchQuery",
           "decode_cursor", "encode_cursor", "iso_utc", "marked_snippet", "match_expression",
           "query_words", "run_search"]

MAX_LIMIT = 100
#: The last word of a query is matched as a prefix; a shorter one would expand to nearly
#: every term of the index (and every document) before the filters and the limit apply.
MIN_PREFIX_CHARS = 2
_WORD = re.compile(r"\w+", re.UNICODE)
# Both backends delimit hits in a raw snippet with these two control characters, never with
# markup: the text is escaped first, and only then are the delimiters turned into <mark>.
HIT_START, HIT_END = "\x02", "\x03"
_HIT = re.compile(f"({HIT_START}|{HIT_END})")


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    q: str
    source: str | None = None
    agent: str | None = None  # agent id or name
    status: str | None = None
    from_: datetime | None = None  # last activity at or after
    to: datetime | None = None  # last activity before
    limit: int = 20
    offset: int = 0


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: str
    score: float  # bm25, higher is better (SQLite's is negated)
    snippet: str  # the best matching document as escaped HTML, hits in <mark>…</mark>
    matched: str  # "chat" (subject, names, department, site) or "message"
    source: str | None
    provider: str | None
    subject: str | None
    status: str | None
    agent: str | None
    visitor: str | None
    department: str | None
    site: str | None
    last_activity_at: str | None


class SearchPage(msgspec.Struct, frozen=True, kw_only=True):
    hits: list[SearchHit]
    next_cursor: str | None


def iso_utc(at: datetime | None) -> str | None:
    """The index's one time format (UTC, microseconds): text order is time order.

    ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, as ``isoformat(timespec="microseconds")`` of the
    time in UTC writes it; made from msgspec's RFC 3339 text (``…SS[.ffffff]Z``), which
    costs a tenth of ``isoformat`` here (2 us a call: the search consumer makes one or two
    per state)."""
    if at is None:
        return None
    if at.tzinfo is not UTC:  # decoded states' times are UTC already: no conversion
        at = at.astimezone(UTC)
    text = _rfc3339(at)  # b'"2026-01-05T08:01:41Z"' or b'"2026-01-05T08:01:41.000120Z"'
    if len(text) == 22:
        return f"{text[1:20].decode()}.000000+00:00"
    return f"{text[1:27].decode()}+00:00"


_rfc3339 = msgspec.json.encode


def query_words(q: str) -> list[str]:
    """The words of user text (``\\w+`` runs), in order; both backends match each one, the last
    as a prefix. :class:`ContractError` when that last word is shorter than
    :data:`MIN_PREFIX_CHARS` (the search API answers 400)."""
    words: list[str] = _WORD.findall(q)
    if words and len(words[-1]) < MIN_PREFIX_CHARS:
        raise ContractError(f"q: the last word is matched as a prefix and needs at least "
                            f"{MIN_PREFIX_CHARS} characters (got {words[-1]!r})")
    return words


def match_expression(q: str) -> str | None:
    """User text → an FTS5 query: every word must match (the last as a prefix). Quoting each
    word means no user input is ever parsed as FTS5 syntax."""
    words = query_words(q)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def marked_snippet(raw: str) -> str:
    """A backend's raw snippet (hits between :data:`HIT_START` and :data:`HIT_END`) as HTML:
    the text HTML-escaped (``& < > " '``), then ``<mark>…</mark>`` around each hit.

    Visitor-typed text never becomes markup, so any UI may render the snippet as HTML. The
    marks are always balanced: a stray delimiter typed into a message can at most move a
    highlight, never open an element.
    """
    out: list[str] = []
    marking = False
    for part in _HIT.split(raw):
        if part == HIT_START:
            if not marking:
                out.append("<mark>")
                marking = True
        elif part == HIT_END:
            if marking:
                out.append("</mark>")
                marking = False
        elif part:
            out.append(html.escape(part))
    if marking:
        out.append("</mark>")
    return "".join(out)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor of :func:`encode_cursor` holds; ContractError for any other text."""
    invalid = ContractError("cursor: not one this API issued")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise invalid from None
    if not text.startswith("o"):
        raise invalid
    try:
        return parse_uint(text[1:], "cursor")
    except ContractError:
        raise invalid from None


_SQL = """
WITH m AS MATERIALIZED (
    SELECT chat_id, kind, bm25(docs_fts) AS score,
           snippet(docs_fts, 2, :hit_start, :hit_end, '…', 16) AS snip
    FROM docs_fts WHERE docs_fts MATCH :match),
best AS (
    SELECT chat_id, kind, score, snip,
           row_number() OVER (PARTITION BY chat_id ORDER BY score, kind) AS rn FROM m)
SELECT b.chat_id, b.score, b.snip, b.kind, c.source, c.provider, c.subject, c.status,
       c.agent_name, c.visitor_name, c.department, c.site, c.last_at
FROM best b JOIN chats c ON c.chat_id = b.chat_id
WHERE b.rn = 1
  AND (:source IS NULL OR c.source = :source)
  AND (:status IS NULL OR c.status = :status)
  AND (:agent IS NULL OR c.agent_id = :agent OR c.agent_name = :agent)
  AND (:from IS NULL OR c.last_at >= :from)
  AND (:to IS NULL OR c.last_at < :to)
ORDER BY b.score, b.chat_id
LIMIT :limit OFFSET :offset
"""


def run_search(db: sqlite3.Connection, query: SearchQuery) -> SearchPage:
    match = match_expression(query.q)
    if match is None:
        return SearchPage(hits=[], next_cursor=None)
    limit = max(1, min(MAX_LIMIT, query.limit))
    rows = db.execute(_SQL, {
        "match": match, "source": query.source, "status": query.status, "agent": query.agent,
        "from": iso_utc(query.from_), "to": iso_utc(query.to),
        "limit": limit + 1, "offset": query.offset, "hit_start": HIT_START,
        "hit_end": HIT_END}).fetchall()
    hits = [SearchHit(chat_id=r[0], score=-r[1], snippet=marked_snippet(r[2]), matched=r[3],
                      source=r[4],
                      provider=r[5], subject=r[6], status=r[7], agent=r[8], visitor=r[9],
                      department=r[10], site=r[11], last_activity_at=r[12])
            for r in rows[:limit]]
    more = len(rows) > limit
    return SearchPage(hits=hits, next_cursor=encode_cursor(query.offset + limit) if more else None)
