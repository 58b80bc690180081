"""The search index: a small Protocol and its SQLite FTS5 implementation.

Documents are one per chat (subject, department, site, visitor and agent names) and one per
message (text and author name), each tied to its chat; a search ranks *chats* by the best
bm25 score among their documents and shows that document's highlighted snippet.

Idempotent and order-tolerant: messages are keyed by (chat id, message id); a chat's
descriptive fields, status and agent are last-writer-wins by the event's ``occurred_at``; a
message's text by its posted/edited time, and a deletion is final. Applying the same events
again (at-least-once redelivery) leaves the index as it was.

Durability: the search consumer's Kafka offsets are committed *after* :meth:`apply` returns
and are not stored in the index, so a committed index transaction must already be on disk
when ``apply`` returns: otherwise a power cut could lose writes whose offsets Kafka already
holds, and they would never be indexed again. Hence ``synchronous = FULL`` (WAL mode: one
fsync of the log per transaction, i.e. per fetched batch). PostgreSQL gives the same through
``synchronous_commit`` (see :mod:`consumers.search.pg_index`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

import orjson

from consumers.search.from_states import ChatRow, MessageRow, erased_chats, rows_of
from consumers.search.queries import SearchPage, SearchQuery, iso_utc, run_search
from consumers.sqlite_columns import add_missing_columns
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
from parley.private_files import private_sqlite
from parley.sqlite_wal import use_wal

__all__ = ["SearchIndex", "SqliteSearchIndex"]

# A state replaces a row of a lower (or no) version. The batch's writer has already read the
# stored versions under its write lock, so the WHERE never refuses: it states the rule again.
_CHAT_STATE = (
    "INSERT INTO chats(chat_id, provider, source, subject, department, site, visitor_name, "
    "agent_id, agent_name, status, started_at, last_at, version, indexed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(chat_id) DO UPDATE SET "
    "provider = excluded.provider, source = excluded.source, subject = excluded.subject, "
    "department = excluded.department, site = excluded.site, "
    "visitor_name = excluded.visitor_name, agent_id = excluded.agent_id, "
    "agent_name = excluded.agent_name, status = excluded.status, "
    "started_at = excluded.started_at, last_at = excluded.last_at, version = excluded.version, "
    "indexed = excluded.indexed "
    "WHERE chats.version IS NULL OR excluded.version >= chats.version")
_MESSAGE_STATE = (
    "INSERT INTO messages(chat_id, message_id, text, author, text_at, deleted, version, indexed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(chat_id, message_id) DO UPDATE SET "
    "text = excluded.text, author = excluded.author, text_at = excluded.text_at, "
    "deleted = excluded.deleted, version = excluded.version, indexed = excluded.indexed "
    "WHERE messages.version IS NULL OR excluded.version >= messages.version")
# What a batch of states needs to know of the rows it touches, read in one statement each:
# the stored version, the indexed body, (messages) the sticky agent-only flag, and the rowid
# of the full-text document. ``?`` is a JSON array of keys.
_CHATS_STORED = (
    "SELECT c.chat_id, c.version, c.indexed, d.rowid FROM json_each(?) j "
    "JOIN chats c ON c.chat_id = j.value LEFT JOIN docs d ON d.doc_id = 'chat:' || c.chat_id")
_MESSAGES_STORED = (
    "SELECT m.chat_id, m.message_id, m.version, m.indexed, m.internal, d.rowid "
    "FROM json_each(?) j JOIN messages m ON m.chat_id = json_extract(j.value, '$[0]') "
    "AND m.message_id = json_extract(j.value, '$[1]') "
    "LEFT JOIN docs d ON d.doc_id = 'msg:' || m.chat_id || '/' || m.message_id")

# The full-text documents of erased chats (``?``: a JSON array of chat ids): each chat's own
# and one per message of it.
_DOOMED_DOCS = (
    "WITH ids(chat_id) AS (SELECT value FROM json_each(?)), "
    "doomed(doc_id) AS (SELECT 'chat:' || chat_id FROM ids UNION ALL "
    "SELECT 'msg:' || m.chat_id || '/' || m.message_id FROM messages m "
    "JOIN ids ON m.chat_id = ids.chat_id) "
    "SELECT d.rowid FROM doomed JOIN docs d ON d.doc_id = doomed.doc_id")

SCHEMA = """
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS chats (
    chat_id TEXT PRIMARY KEY, provider TEXT, source TEXT, subject TEXT, department TEXT,
    site TEXT, visitor_name TEXT, agent_id TEXT, agent_name TEXT, status TEXT,
    started_at TEXT, last_at TEXT, meta_at TEXT, status_at TEXT, agent_at TEXT, indexed TEXT);
CREATE INDEX IF NOT EXISTS chats_last_at ON chats(last_at);
CREATE TABLE IF NOT EXISTS messages (
    chat_id TEXT NOT NULL, message_id TEXT NOT NULL, text TEXT, author TEXT,
    text_at TEXT, deleted INTEGER NOT NULL DEFAULT 0, indexed TEXT,
    internal INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (chat_id, message_id));
CREATE TABLE IF NOT EXISTS docs (rowid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(
    chat_id UNINDEXED, kind UNINDEXED, body, tokenize = 'unicode61 remove_diacritics 2');
"""
T = TypeVar("T")
STATUS_RANK = {"waiting": 0, "active": 1, "idle": 2, "closed": 3}
# Index files from before agent-only notes were tracked, and from before states: the columns
# added since.
_ADDED = {"chats": ("version INTEGER",),
          "messages": ("internal INTEGER NOT NULL DEFAULT 0", "version INTEGER")}
_Message = tuple[str | None, str | None, int, str | None, int]  # text, author, deleted, indexed, internal


class SearchIndex(Protocol):
    """Where the search consumer writes and ``GET /api/search`` reads."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def apply(self, events: Sequence[DomainEvent]) -> None:
        """Apply domain events in one transaction (idempotent, see module doc)."""
    async def apply_states(self, changes: Sequence[StateChange]) -> None:
        """Apply the projector's chat and message states in one transaction: a row is
        replaced by a state of at least its version (see :mod:`consumers.search.from_states`)."""
    async def search(self, query: SearchQuery) -> SearchPage: ...


_iso = iso_utc
_json = orjson.dumps


class SqliteSearchIndex:
    """SQLite FTS5 in a file (``data_dir/search.db``); all SQL runs on one worker thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-index")
        self._db: sqlite3.Connection | None = None
        # Per batch being applied: the final row of each touched message, and each touched
        # chat's latest activity time.
        self._messages: dict[tuple[str, str], _Message] = {}
        self._last_at: dict[str, str] = {}

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            private_sqlite(Path(self.path))  # message text: owner-only, -wal/-shm too
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")  # members of the group share the file
        use_wal(db)
        db.executescript(SCHEMA)
        add_missing_columns(db, _ADDED)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def apply(self, events: Sequence[DomainEvent]) -> None:
        if events:
            await self._run(self._apply, events)

    async def apply_states(self, changes: Sequence[StateChange]) -> None:
        chats, messages = rows_of(changes)
        if chats or messages:
            await self._run(self._apply_states, chats, messages)
        erased = erased_chats(changes)
        if erased:
            await self._run(self._drop_chats, erased)

    def _drop_chats(self, chat_ids: list[str]) -> None:
        """Delete every row and document of ``chat_ids`` (erased), in one transaction; the
        documents found by their ids (the unique index), the messages by their chat (the
        primary key's prefix)."""
        db = self._db
        assert db is not None
        ids = (_json(chat_ids),)
        db.execute("BEGIN IMMEDIATE")
        try:
            rowids = db.execute(_DOOMED_DOCS, ids).fetchall()
            db.executemany("DELETE FROM docs_fts WHERE rowid = ?", rowids)
            db.executemany("DELETE FROM docs WHERE rowid = ?", rowids)
            db.execute("DELETE FROM messages WHERE chat_id IN (SELECT value FROM json_each(?))",
                       ids)
            db.execute("DELETE FROM chats WHERE chat_id IN (SELECT value FROM json_each(?))", ids)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._run(self._search, query)

    def _search(self, query: SearchQuery) -> SearchPage:
        assert self._db is not None
        return run_search(self._db, query)

    # ----------------------------------------------------------------- writes
    def _apply(self, events: Sequence[DomainEvent]) -> None:
        db = self._db
        assert db is not None
        # Rows first, full-text documents last and once per chat or message per batch (a
        # Natterly webhook repeats every message of its chat: most are unchanged).
        self._messages = {}
        self._last_at = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for e in events:
                self._apply_one(db, e)
            for (chat_id, message_id), row in self._messages.items():
                self._sync_message(db, chat_id, message_id, row)
            for chat_id, last_at in self._last_at.items():
                self._reindex_chat(db, chat_id, last_at)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _apply_states(self, chats: list[ChatRow], messages: list[MessageRow]) -> None:
        """One transaction: read what the batch's rows hold, then write only the rows a state
        replaces and only the documents whose text changes, each kind in one ``executemany``."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            docs = _Docs(db)
            stored_m = {(r[0], r[1]): r[2:] for r in db.execute(
                _MESSAGES_STORED, (_json([(m.chat_id, m.message_id) for m in messages]),))}
            message_rows = []
            for m in messages:
                version, indexed, internal, rowid = stored_m.get((m.chat_id, m.message_id),
                                                                 (None, "", 0, None))
                if version is not None and m.version < version:
                    continue  # the index holds a later state
                body = ("" if m.deleted or internal or not m.text
                        else f"{m.text}\n{m.author}" if m.author else m.text)
                if body != (indexed or ""):
                    docs.put(rowid, f"msg:{m.chat_id}/{m.message_id}", m.chat_id, "message", body)
                message_rows.append((*m, body))
            stored_c = {r[0]: r[1:] for r in db.execute(
                _CHATS_STORED, (_json([c.chat_id for c in chats]),))}
            chat_rows = []
            for c in chats:
                version, indexed, rowid = stored_c.get(c.chat_id, (None, "", None))
                if version is not None and c.version < version:
                    continue
                body = "\n".join(v for v in (c.subject, c.department, c.site, c.visitor_name,
                                             c.agent_name) if v)
                if body != (indexed or ""):
                    docs.put(rowid, f"chat:{c.chat_id}", c.chat_id, "chat", body)
                chat_rows.append((*c, body))
            db.executemany(_MESSAGE_STATE, message_rows)
            db.executemany(_CHAT_STATE, chat_rows)
            docs.write()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _ensure_chat(self, db: sqlite3.Connection, e: DomainEvent, chat_id: str) -> None:
        """Create the chat's row once per batch; its last activity is written at the end."""
        at = _iso(e.occurred_at) or ""
        seen = self._last_at.get(chat_id)
        if seen is None:
            db.execute("INSERT INTO chats(chat_id, provider, source) VALUES (?, ?, ?) "
                       "ON CONFLICT(chat_id) DO NOTHING", (chat_id, e.provider, e.source))
            self._last_at[chat_id] = at
        elif at > seen:
            self._last_at[chat_id] = at

    def _apply_one(self, db: sqlite3.Connection, e: DomainEvent) -> str | None:
        at = _iso(e.occurred_at)
        match e:
            case MessagePosted():
                self._ensure_chat(db, e, e.chat_id)
                # Agent-only notes (whispers) are not searchable by anyone with the API,
                # and stay so through edits that do not repeat the flag (it is sticky).
                self._put_text(db, e.chat_id, e.message_id, e.text, _iso(e.posted_at),
                               e.author.name, e.internal)
                return e.chat_id
            case MessageEdited():
                self._ensure_chat(db, e, e.chat_id)
                self._put_text(db, e.chat_id, e.message_id, e.text, _iso(e.edited_at), None,
                               e.internal)
                return e.chat_id
            case MessageDeleted():
                self._ensure_chat(db, e, e.chat_id)
                self._messages[(e.chat_id, e.message_id)] = db.execute(
                    "INSERT INTO messages(chat_id, message_id, deleted) VALUES (?, ?, 1) "
                    "ON CONFLICT(chat_id, message_id) DO UPDATE SET deleted = 1 "
                    "RETURNING text, author, deleted, indexed, internal", (e.chat_id, e.message_id)
                ).fetchone()
                return e.chat_id
            case ChatUpdated():
                self._ensure_chat(db, e, e.chat_id)
                db.execute(
                    "UPDATE chats SET subject = coalesce(?, subject), department = coalesce(?, "
                    "department), site = coalesce(?, site), visitor_name = coalesce(?, "
                    "visitor_name), started_at = coalesce(started_at, ?), meta_at = ? "
                    "WHERE chat_id = ? AND (meta_at IS NULL OR meta_at <= ?)",
                    (e.subject, e.department.name if e.department else None,
                     e.site.name if e.site else None, e.visitor.name if e.visitor else None,
                     _iso(e.initiated_at), at, e.chat_id, at))
                return e.chat_id
            case ChatStarted() | ChatAccepted() | ChatIdle() | ChatClosed():
                self._ensure_chat(db, e, e.chat_id)
                status = {ChatStarted: "waiting", ChatAccepted: "active", ChatIdle: "idle",
                          ChatClosed: "closed"}[type(e)]
                self._set_status(db, e.chat_id, status, at)
                if isinstance(e, ChatStarted):
                    db.execute("UPDATE chats SET started_at = coalesce(started_at, ?) "
                               "WHERE chat_id = ?", (_iso(e.initiated_at) or at, e.chat_id))
                if isinstance(e, ChatAccepted) and e.agent is not None:
                    self._set_agent(db, e.chat_id, e.agent.id, e.agent.name, at)
                return e.chat_id
            case ChatAssigned():
                self._ensure_chat(db, e, e.chat_id)
                self._set_agent(db, e.chat_id, e.agent.id if e.agent else None,
                                e.agent.name if e.agent else None, at)
                return e.chat_id
        return None

    def _put_text(self, db: sqlite3.Connection, chat_id: str, message_id: str,
                  text: str | None, text_at: str | None, author: str | None,
                  internal: bool) -> None:
        # Last writer wins by the text's own time (posted or edited); on a tie the later event
        # in the log wins, which is the newer one (one chat's events are read in log order).
        self._messages[(chat_id, message_id)] = db.execute(
            "INSERT INTO messages(chat_id, message_id, text, text_at, author, internal) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(chat_id, message_id) DO UPDATE SET "
            "author = coalesce(excluded.author, messages.author), "
            "internal = max(messages.internal, excluded.internal), "
            "text = CASE WHEN messages.text_at IS NULL OR excluded.text_at >= messages.text_at "
            "THEN excluded.text ELSE messages.text END, "
            "text_at = CASE WHEN messages.text_at IS NULL OR excluded.text_at >= messages.text_at "
            "THEN excluded.text_at ELSE messages.text_at END "
            "RETURNING text, author, deleted, indexed, internal",
            (chat_id, message_id, text, text_at, author, int(internal))).fetchone()

    def _set_status(self, db: sqlite3.Connection, chat_id: str, status: str, at: str | None
                    ) -> None:
        # Last writer wins by occurred_at; on a tie the later stage (closed > idle > …) wins.
        db.execute("UPDATE chats SET status = ?, status_at = ? WHERE chat_id = ? AND ("
                   "status_at IS NULL OR status_at < ? OR (status_at = ? AND CASE status "
                   "WHEN 'waiting' THEN 0 WHEN 'active' THEN 1 WHEN 'idle' THEN 2 "
                   "WHEN 'closed' THEN 3 ELSE -1 END < ?))",
                   (status, at, chat_id, at, at, STATUS_RANK[status]))

    def _set_agent(self, db: sqlite3.Connection, chat_id: str, agent_id: str | None,
                   name: str | None, at: str | None) -> None:
        db.execute("UPDATE chats SET agent_id = ?, agent_name = ?, agent_at = ? WHERE chat_id = ? "
                   "AND (agent_at IS NULL OR agent_at <= ?)", (agent_id, name, at, chat_id, at))

    def _put_doc(self, db: sqlite3.Connection, doc_id: str, chat_id: str, kind: str,
                 body: str | None) -> None:
        new = db.execute("INSERT INTO docs(doc_id) VALUES (?) ON CONFLICT(doc_id) DO NOTHING "
                         "RETURNING rowid", (doc_id,)).fetchone()
        if new is not None:
            rowid = int(new[0])
        else:  # replace the document's indexed text
            rowid = int(db.execute("SELECT rowid FROM docs WHERE doc_id = ?",
                                   (doc_id,)).fetchone()[0])
            db.execute("DELETE FROM docs_fts WHERE rowid = ?", (rowid,))
        if body:
            db.execute("INSERT INTO docs_fts(rowid, chat_id, kind, body) VALUES (?, ?, ?, ?)",
                       (rowid, chat_id, kind, body))

    def _sync_message(self, db: sqlite3.Connection, chat_id: str, message_id: str,
                      row: _Message) -> None:
        text, author, deleted, indexed, internal = row  # the row after the batch's last change
        body = "" if deleted or internal or not text else (f"{text}\n{author}" if author else text)
        if body != (indexed or ""):
            self._put_doc(db, f"msg:{chat_id}/{message_id}", chat_id, "message", body)
            db.execute("UPDATE messages SET indexed = ? WHERE chat_id = ? AND message_id = ?",
                       (body, chat_id, message_id))

    def _reindex_chat(self, db: sqlite3.Connection, chat_id: str, last_at: str) -> None:
        row = db.execute("UPDATE chats SET last_at = max(coalesce(last_at, ''), ?) "
                         "WHERE chat_id = ? RETURNING subject, department, site, visitor_name, "
                         "agent_name, indexed", (last_at, chat_id)).fetchone()
        body = "\n".join(v for v in row[:5] if v)
        if body != (row[5] or ""):
            self._put_doc(db, f"chat:{chat_id}", chat_id, "chat", body)
            db.execute("UPDATE chats SET indexed = ? WHERE chat_id = ?", (body, chat_id))



class _Docs:
    """The full-text documents one batch of states rewrites, written at the end in one
    ``executemany`` per statement. New documents take rowids after the greatest (the batch
    holds the write lock, so nobody else takes one meanwhile)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._next: int | None = None
        self.new: list[tuple[int, str]] = []  # docs rows to insert: rowid, doc_id
        self.stale: list[tuple[int]] = []  # indexed texts to delete, by rowid
        self.texts: list[tuple[int, str, str, str]] = []  # rowid, chat_id, kind, body

    def put(self, rowid: int | None, doc_id: str, chat_id: str, kind: str, body: str) -> None:
        """Replace the indexed text of ``doc_id`` (whose docs rowid is ``rowid``, None if it
        has none yet) with ``body`` (none if empty)."""
        if rowid is None:
            if self._next is None:
                self._next = int(self._db.execute(
                    "SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0])
            self._next += 1
            rowid = self._next
            self.new.append((rowid, doc_id))
        else:
            self.stale.append((rowid,))
        if body:
            self.texts.append((rowid, chat_id, kind, body))

    def write(self) -> None:
        db = self._db
        db.executemany("INSERT INTO docs(rowid, doc_id) VALUES (?, ?)", self.new)
        db.executemany("DELETE FROM docs_fts WHERE rowid = ?", self.stale)
        db.executemany("INSERT INTO docs_fts(rowid, chat_id, kind, body) VALUES (?, ?, ?, ?)",
                       self.texts)
