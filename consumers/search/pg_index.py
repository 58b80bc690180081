"""The search index in PostgreSQL full-text search: what the search consumer uses when the store
is PostgreSQL (so several consumer instances, and every API replica, share one index).

Same documents, rules and answers as :class:`~consumers.search.index.SqliteSearchIndex`: one
document per chat (subject, department, site, visitor and agent names) and one per message
(text and author), each tied to its chat; a search ranks chats by the best score of their
documents and shows that document's highlighted snippet. Idempotent and order-tolerant by
the same last-writer-wins rules, so at-least-once redelivery leaves the index as it was.

PostgreSQL's side: each row's searchable ``body`` and its ``tsvector`` are *generated
columns* (``to_tsvector('simple', body)``, indexed with GIN), so they can never disagree with
the fields they come from. The ``simple`` configuration lower-cases words and neither stems
them nor drops stop words, like the SQLite index's ``unicode61`` tokenizer (which also folds
diacritics; PostgreSQL's ``simple`` does not). Every word of the query must match one
document, the last as a prefix (``'word':*``). Scores are ``ts_rank_cd`` (higher is better).

A batch is applied in one transaction, statement by statement kind (``executemany``), which
keeps the SQLite index's semantics: the kinds of statement touch different columns, and a
message's deletion is final whatever the order. Updates that would change nothing are
skipped, so a Natterly webhook that repeats a chat's whole transcript rewrites no message.
Tables live in the store's schema (``?schema=``) and are versioned like the store's
(component ``search`` in ``parley_migrations``).

Durability: the consumer commits its Kafka offsets after :meth:`PgSearchIndex.apply` returns,
not in the index's transaction, so a commit must be flushed before it is acknowledged. When
the server's (or role's, or URL's) ``synchronous_commit`` is ``off`` — fine for the projector,
whose offsets share its transaction — the index's connections run with ``on``; a stricter
setting (``remote_write``, ``remote_apply``) is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg

from consumers.search.from_states import erased_chats, rows_of
from consumers.search.queries import (
    HIT_END,
    HIT_START,
    MAX_LIMIT,
    SearchHit,
    SearchPage,
    SearchQuery,
    encode_cursor,
    iso_utc,
    marked_snippet,
    query_words,
)
from contracts.domain import (
    ChatAccepted,
    ChatAssigned,
    ChatClosed,
    ChatIdle,
    ChatStarted,
    ChatUpdated,
    DomainEvent,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
)
from contracts.state_change import StateChange
from parley.errors import StoreError
from parley.pg.migrate import Migration, migrate, quote_ident
from parley.pg.url import parse_postgres_url

__all__ = ["SEARCH_MIGRATIONS", "PgSearchIndex", "tsquery"]

_STATUS = {ChatStarted: "waiting", ChatAccepted: "active", ChatIdle: "idle", ChatClosed: "closed"}


def _v1(s: str) -> list[str]:
    return [
        f"""CREATE TABLE {s}.search_chats (
            chat_id TEXT PRIMARY KEY, provider TEXT, source TEXT, subject TEXT, department TEXT,
            site TEXT, visitor_name TEXT, agent_id TEXT, agent_name TEXT, status TEXT,
            started_at TEXT, last_at TEXT, meta_at TEXT, status_at TEXT, agent_at TEXT,
            body TEXT GENERATED ALWAYS AS (rtrim(
                coalesce(subject || E'\\n', '') || coalesce(department || E'\\n', '')
                || coalesce(site || E'\\n', '') || coalesce(visitor_name || E'\\n', '')
                || coalesce(agent_name, ''), E'\\n')) STORED,
            doc TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple',
                coalesce(subject, '') || ' ' || coalesce(department, '') || ' '
                || coalesce(site, '') || ' ' || coalesce(visitor_name, '') || ' '
                || coalesce(agent_name, ''))) STORED)""",
        f"CREATE INDEX search_chats_doc ON {s}.search_chats USING gin (doc)",
        f"CREATE INDEX search_chats_last_at ON {s}.search_chats (last_at)",
        f"""CREATE TABLE {s}.search_messages (
            chat_id TEXT NOT NULL, message_id TEXT NOT NULL, text TEXT, author TEXT,
            text_at TEXT, deleted BOOLEAN NOT NULL DEFAULT false,
            body TEXT GENERATED ALWAYS AS (CASE WHEN deleted OR text IS NULL OR text = '' THEN ''
                ELSE text || coalesce(E'\\n' || author, '') END) STORED,
            doc TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', CASE WHEN deleted OR text IS NULL
                THEN '' ELSE text || ' ' || coalesce(author, '') END)) STORED,
            PRIMARY KEY (chat_id, message_id))""",
        f"CREATE INDEX search_messages_doc ON {s}.search_messages USING gin (doc)",
    ]


def _v2(s: str) -> list[str]:
    """Agent-only notes: a sticky ``internal`` flag that keeps a message out of its document."""
    return [
        f"DROP INDEX {s}.search_messages_doc",
        f"ALTER TABLE {s}.search_messages DROP COLUMN doc, DROP COLUMN body",
        f"ALTER TABLE {s}.search_messages ADD COLUMN internal BOOLEAN NOT NULL DEFAULT false",
        f"""ALTER TABLE {s}.search_messages
            ADD COLUMN body TEXT GENERATED ALWAYS AS (CASE WHEN deleted OR internal OR text IS NULL
                OR text = '' THEN '' ELSE text || coalesce(E'\\n' || author, '') END) STORED,
            ADD COLUMN doc TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', CASE WHEN deleted
                OR internal OR text IS NULL THEN '' ELSE text || ' ' || coalesce(author, '') END))
                STORED""",
        f"CREATE INDEX search_messages_doc ON {s}.search_messages USING gin (doc)",
    ]


def _v3(s: str) -> list[str]:
    """Versions of the projector's states: a row is only replaced by a state at least as new."""
    return [f"ALTER TABLE {s}.search_chats ADD COLUMN version BIGINT",
            f"ALTER TABLE {s}.search_messages ADD COLUMN version BIGINT"]


#: The search index's migrations, oldest first (rules in :mod:`parley.pg.migrate`).
SEARCH_MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="chats and messages with generated tsvectors", statements=_v1),
    Migration(version=2, description="agent-only notes stay out of documents", statements=_v2),
    Migration(version=3, description="versions of the projector's states", statements=_v3),
)


def tsquery(q: str) -> str | None:
    """User text → a ``to_tsquery`` string: every word must match, the last as a prefix.
    Only ``\\w+`` words, each quoted, reach it, so no user input is parsed as operators."""
    words = query_words(q)
    if not words:
        return None
    quoted = [f"'{w}'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


class _Sql:
    def __init__(self, s: str) -> None:
        chats, messages = f"{s}.search_chats", f"{s}.search_messages"
        # An erased chat: every row goes (the documents are generated columns of the rows).
        self.drop_messages = f"DELETE FROM {messages} WHERE chat_id = ANY($1::text[])"  # noqa: S608
        self.drop_chats = f"DELETE FROM {chats} WHERE chat_id = ANY($1::text[])"  # noqa: S608
        self.ensure_chat = (f"INSERT INTO {chats} (chat_id, provider, source) VALUES ($1, $2, $3) "  # noqa: S608
                            "ON CONFLICT (chat_id) DO NOTHING")
        self.meta = (
            f"UPDATE {chats} SET subject = coalesce($1, subject), "  # noqa: S608
            "department = coalesce($2, department), site = coalesce($3, site), "
            "visitor_name = coalesce($4, visitor_name), started_at = coalesce(started_at, $5), "
            "meta_at = $6 WHERE chat_id = $7 AND (meta_at IS NULL OR meta_at <= $6)")
        # Last writer wins by time; on a tie the later stage (closed > idle > …) wins.
        self.status = (
            f"UPDATE {chats} SET status = $1, status_at = $2 WHERE chat_id = $3 AND ("  # noqa: S608
            "status_at IS NULL OR status_at < $2 OR (status_at = $2 AND CASE status "
            "WHEN 'waiting' THEN 0 WHEN 'active' THEN 1 WHEN 'idle' THEN 2 WHEN 'closed' THEN 3 "
            "ELSE -1 END < $4))")
        self.started = (f"UPDATE {chats} SET started_at = $1 WHERE chat_id = $2 "  # noqa: S608
                        "AND started_at IS NULL")
        self.agent = (f"UPDATE {chats} SET agent_id = $1, agent_name = $2, agent_at = $3 "  # noqa: S608
                      "WHERE chat_id = $4 AND (agent_at IS NULL OR agent_at <= $3)")
        # The text's own time decides (posted or edited); on a tie the later event in the log.
        # The WHERE skips updates that change nothing (most, for Natterly's full transcripts).
        self.text = (
            f"INSERT INTO {messages} AS m (chat_id, message_id, text, text_at, author, internal) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chat_id, message_id) DO UPDATE SET "
            "author = coalesce(excluded.author, m.author), "
            "internal = m.internal OR excluded.internal, "
            "text = CASE WHEN m.text_at IS NULL OR excluded.text_at >= m.text_at "
            "THEN excluded.text ELSE m.text END, "
            "text_at = CASE WHEN m.text_at IS NULL OR excluded.text_at >= m.text_at "
            "THEN excluded.text_at ELSE m.text_at END "
            "WHERE (excluded.author IS NOT NULL AND excluded.author IS DISTINCT FROM m.author) "
            "OR (excluded.internal AND NOT m.internal) "
            "OR ((m.text_at IS NULL OR excluded.text_at >= m.text_at) AND "
            "(excluded.text IS DISTINCT FROM m.text OR excluded.text_at IS DISTINCT FROM m.text_at))")
        self.delete = (
            f"INSERT INTO {messages} AS m (chat_id, message_id, deleted) VALUES ($1, $2, true) "  # noqa: S608
            "ON CONFLICT (chat_id, message_id) DO UPDATE SET deleted = true WHERE NOT m.deleted")
        self.last_at = (f"UPDATE {chats} SET last_at = $2 WHERE chat_id = $1 "  # noqa: S608
                        "AND (last_at IS NULL OR last_at < $2)")
        # A state replaces a row of a lower (or no) version.
        self.chat_state = (
            f"INSERT INTO {chats} AS c (chat_id, provider, source, subject, department, site, "  # noqa: S608
            "visitor_name, agent_id, agent_name, status, started_at, last_at, version) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (chat_id) DO UPDATE SET provider = excluded.provider, "
            "source = excluded.source, subject = excluded.subject, "
            "department = excluded.department, site = excluded.site, "
            "visitor_name = excluded.visitor_name, agent_id = excluded.agent_id, "
            "agent_name = excluded.agent_name, status = excluded.status, "
            "started_at = excluded.started_at, last_at = excluded.last_at, "
            "version = excluded.version WHERE c.version IS NULL OR excluded.version >= c.version")
        self.message_state = (
            f"INSERT INTO {messages} AS m (chat_id, message_id, text, author, text_at, deleted, "  # noqa: S608
            "version) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (chat_id, message_id) "
            "DO UPDATE SET text = excluded.text, author = excluded.author, "
            "text_at = excluded.text_at, deleted = excluded.deleted, version = excluded.version "
            "WHERE m.version IS NULL OR excluded.version >= m.version")
        # Rank every matching document, keep each chat's best, filter, page; snippets only
        # for the page (ts_headline re-parses the text).
        self.search = f"""
            WITH q AS (SELECT to_tsquery('simple', $1) AS q),
            m AS (
                SELECT c.chat_id, 'chat' AS kind, ts_rank_cd(c.doc, q.q) AS score, c.body
                FROM {chats} c, q WHERE c.doc @@ q.q
                UNION ALL
                SELECT d.chat_id, 'message', ts_rank_cd(d.doc, q.q), d.body
                FROM {messages} d, q WHERE d.doc @@ q.q),
            best AS (SELECT DISTINCT ON (chat_id) chat_id, kind, score, body FROM m
                     ORDER BY chat_id, score DESC, kind),
            page AS (
                SELECT b.chat_id, b.score, b.body, b.kind, c.source, c.provider, c.subject,
                       c.status, c.agent_name, c.visitor_name, c.department, c.site, c.last_at
                FROM best b JOIN {chats} c ON c.chat_id = b.chat_id
                WHERE ($2::text IS NULL OR c.source = $2)
                  AND ($3::text IS NULL OR c.status = $3)
                  AND ($4::text IS NULL OR c.agent_id = $4 OR c.agent_name = $4)
                  AND ($5::text IS NULL OR c.last_at >= $5)
                  AND ($6::text IS NULL OR c.last_at < $6)
                ORDER BY b.score DESC, b.chat_id LIMIT $7 OFFSET $8)
            SELECT p.chat_id, p.score, ts_headline('simple', p.body, q.q, $9),
                   p.kind, p.source, p.provider, p.subject, p.status, p.agent_name,
                   p.visitor_name, p.department, p.site, p.last_at
            FROM page p, q ORDER BY p.score DESC, p.chat_id"""  # noqa: S608


class PgSearchIndex:
    """The :class:`~consumers.search.index.SearchIndex` in PostgreSQL (``url``: the store URL;
    ``schema``: where the tables live, if not the store's: a rebuild's copy of the index)."""

    def __init__(self, url: str, *, pool_size: int = 2, schema: str | None = None) -> None:
        self._options = parse_postgres_url(url)
        if schema is not None:
            self._options = dataclasses.replace(self._options, schema=schema)
        self._pool_size = pool_size
        self._sql = _Sql(quote_ident(self._options.schema))
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        o = self._options
        settings = {"application_name": "parley-search"}
        conn = await asyncpg.connect(o.dsn, timeout=10, server_settings=settings)
        try:
            status = await migrate(conn, o.schema, "search", SEARCH_MIGRATIONS,
                                   apply=o.migrate == "auto")
            lax = await conn.fetchval("SHOW synchronous_commit") == "off"
        finally:
            await conn.close()
        if status.pending:
            raise StoreError(f"the search schema in {o.where} schema {o.schema} is at version "
                             f"{status.current}, this Parley needs {status.latest}: run "
                             "`parley store migrate` (migrate=off is set)")
        if lax:  # an acknowledged commit must survive a crash: see the module docstring
            settings["synchronous_commit"] = "on"
        self._pool = await asyncpg.create_pool(o.dsn, min_size=1, max_size=self._pool_size,
                                               timeout=10, server_settings=settings)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the search index is not open")
        return self._pool

    async def apply(self, events: Sequence[DomainEvent]) -> None:
        """Apply domain events in one transaction (idempotent, see the module docstring)."""
        if not events:
            return
        sql = self._sql
        chats: dict[str, tuple[str, str]] = {}  # chat id -> (provider, source) of its first event
        last_at: dict[str, str] = {}
        meta: list[tuple[Any, ...]] = []
        status: list[tuple[Any, ...]] = []
        started: list[tuple[Any, ...]] = []
        agent: list[tuple[Any, ...]] = []
        text: list[tuple[Any, ...]] = []
        deleted: list[tuple[Any, ...]] = []
        for e in events:
            chat_id = getattr(e, "chat_id", None)
            if chat_id is None or not isinstance(e, _INDEXED):
                continue
            at = iso_utc(e.occurred_at) or ""
            chats.setdefault(chat_id, (e.provider, e.source))
            if at > last_at.get(chat_id, ""):
                last_at[chat_id] = at
            match e:
                case MessagePosted():
                    # Agent-only notes (whispers) are not searchable by anyone with the API,
                    # through edits too: ``internal`` is sticky in the row.
                    text.append((chat_id, e.message_id, e.text, iso_utc(e.posted_at),
                                 e.author.name, e.internal))
                case MessageEdited():
                    text.append((chat_id, e.message_id, e.text, iso_utc(e.edited_at), None,
                                 e.internal))
                case MessageDeleted():
                    deleted.append((chat_id, e.message_id))
                case ChatUpdated():
                    meta.append((e.subject, e.department.name if e.department else None,
                                 e.site.name if e.site else None,
                                 e.visitor.name if e.visitor else None, iso_utc(e.initiated_at),
                                 at, chat_id))
                case ChatAssigned():
                    agent.append((e.agent.id if e.agent else None,
                                  e.agent.name if e.agent else None, at, chat_id))
                case ChatStarted() | ChatAccepted() | ChatIdle() | ChatClosed():
                    word = _STATUS[type(e)]
                    status.append((word, at, chat_id, _RANK[word]))
                    if isinstance(e, ChatStarted):
                        started.append((iso_utc(e.initiated_at) or at, chat_id))
                    if isinstance(e, ChatAccepted) and e.agent is not None:
                        agent.append((e.agent.id, e.agent.name, at, chat_id))
        if not chats:
            return
        async with self._p().acquire() as conn, conn.transaction():
            # Sorted: two instances indexing overlapping chats lock rows in the same order.
            await conn.executemany(sql.ensure_chat, [(c, *chats[c]) for c in sorted(chats)])
            for statement, rows in ((sql.started, started), (sql.meta, meta), (sql.status, status),
                                    (sql.agent, agent), (sql.text, text), (sql.delete, deleted)):
                if rows:
                    await conn.executemany(statement, rows)
            await conn.executemany(sql.last_at, sorted(last_at.items()))

    async def apply_states(self, changes: Sequence[StateChange]) -> None:
        """Apply the projector's states in one transaction (a row is replaced by a state of at
        least its version; the searchable bodies are generated columns)."""
        chats, messages = rows_of(changes)
        erased = erased_chats(changes)
        if not (chats or messages or erased):
            return
        async with self._p().acquire() as conn, conn.transaction():
            if chats:
                await conn.executemany(self._sql.chat_state, chats)
            if messages:
                await conn.executemany(self._sql.message_state, messages)
            if erased:
                await conn.execute(self._sql.drop_messages, erased)
                await conn.execute(self._sql.drop_chats, erased)

    async def search(self, query: SearchQuery) -> SearchPage:
        expression = tsquery(query.q)
        if expression is None:
            return SearchPage(hits=[], next_cursor=None)
        limit = max(1, min(MAX_LIMIT, query.limit))
        async with self._p().acquire() as conn:
            rows = await conn.fetch(self._sql.search, expression, query.source, query.status,
                                    query.agent, iso_utc(query.from_), iso_utc(query.to),
                                    limit + 1, query.offset, _HEADLINE)
        hits = [SearchHit(chat_id=r[0], score=float(r[1]), snippet=marked_snippet(r[2]),
                          matched=r[3], source=r[4],
                          provider=r[5], subject=r[6], status=r[7], agent=r[8], visitor=r[9],
                          department=r[10], site=r[11], last_activity_at=r[12])
                for r in rows[:limit]]
        more = len(rows) > limit
        return SearchPage(hits=hits, next_cursor=encode_cursor(query.offset + limit) if more else None)


# Hits between the two delimiters, which marked_snippet() turns into <mark> after escaping.
_HEADLINE = (f"StartSel={HIT_START}, StopSel={HIT_END}, MaxWords=16, MinWords=4, "
             "MaxFragments=1, FragmentDelimiter=…")
_INDEXED = (MessagePosted, MessageEdited, MessageDeleted, ChatUpdated, ChatAssigned, ChatStarted,
            ChatAccepted, ChatIdle, ChatClosed)
_RANK = {"waiting": 0, "active": 1, "idle": 2, "closed": 3}
