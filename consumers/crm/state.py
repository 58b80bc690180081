"""What the CRM consumer remembers between records (SQLite, ``<data_dir>/crm.db``): each
chat's state and messages as the projector published them (for the activity and its
transcript), visitors' contact details, and which contact and activity versions were last
sent. Chat and message rows are replaced only by a state of at least their version, so
redelivery in any order is harmless; the CRM itself deduplicates requests by idempotency
key."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from consumers.search.queries import iso_utc
from consumers.sqlite_columns import add_missing_columns
from contracts.state import ChatState, MessageState
from parley.private_files import private_sqlite
from parley.sqlite_wal import use_wal

__all__ = ["CrmState"]

# A state replaces a row of a lower (or no) version; chat rows a VisitorSeen created first
# keep their visitor until a state names one.
_CHAT_STATE = (
    "INSERT INTO chats(chat_id, source, subject, visitor_id, agent, rating, completed, status, "
    "closed_at, agents, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(chat_id) DO UPDATE SET "
    "source = excluded.source, subject = excluded.subject, "
    "visitor_id = coalesce(excluded.visitor_id, chats.visitor_id), agent = excluded.agent, "
    "rating = excluded.rating, completed = excluded.completed, status = excluded.status, "
    "closed_at = excluded.closed_at, agents = excluded.agents, version = excluded.version "
    "WHERE chats.version IS NULL OR excluded.version >= chats.version")
_MESSAGE_STATE = (
    "INSERT INTO messages(chat_id, message_id, posted_at, author, author_id, author_named, text, "
    "text_at, deleted, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(chat_id, message_id) DO UPDATE SET "
    "posted_at = excluded.posted_at, author = excluded.author, author_id = excluded.author_id, "
    "author_named = excluded.author_named, text = excluded.text, "
    "text_at = excluded.text_at, deleted = excluded.deleted, version = excluded.version "
    "WHERE messages.version IS NULL OR excluded.version >= messages.version")

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS visitors (visitor_id TEXT PRIMARY KEY, name TEXT, email TEXT,
    source TEXT, sent TEXT);
CREATE TABLE IF NOT EXISTS chats (chat_id TEXT PRIMARY KEY, source TEXT, subject TEXT,
    visitor_id TEXT, agent TEXT, rating TEXT, completed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (chat_id TEXT NOT NULL, message_id TEXT NOT NULL,
    posted_at TEXT, author TEXT, text TEXT, text_at TEXT, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, message_id));
"""
CHAT_FIELDS = ("source", "subject", "visitor_id", "agent", "rating")
# Files from before state topics: the columns the projector's states need.
# ``agents`` (the chat's {agent id: name}) and a message's ``author_id`` / ``author_named``
# name, in the transcript, an author the message's own webhook gave only by id.
_ADDED = {"chats": ("status TEXT", "closed_at TEXT", "version INTEGER", "sent_key TEXT",
                    "agents TEXT"),
          "messages": ("version INTEGER", "author_id TEXT", "author_named INTEGER")}


class CrmState:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-state")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        def _open() -> None:
            if self.path != ":memory:":
                private_sqlite(Path(self.path))  # chat attributes: owner-only, -wal/-shm too
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")  # members of the group share the file
            use_wal(self._db)
            self._db.executescript(SCHEMA)
            add_missing_columns(self._db, _ADDED)

        await self._run(_open)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, args).fetchall()

    async def chat(self, chat_id: str, source: str, **fields: Any) -> None:
        """Record known chat attributes (None leaves a field as it was)."""
        sets = [f for f in CHAT_FIELDS if fields.get(f) is not None]

        def write() -> None:
            self._x("INSERT INTO chats(chat_id, source) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (chat_id, source))
            if sets:
                self._x(f"UPDATE chats SET {', '.join(f'{f} = ?' for f in sets)} "  # noqa: S608
                        "WHERE chat_id = ?", (*[str(fields[f]) for f in sets], chat_id))
            if fields.get("completed"):
                self._x("UPDATE chats SET completed = 1 WHERE chat_id = ?", (chat_id,))

        await self._run(write)

    async def visitor(self, visitor_id: str, *, name: str | None, email: str | None,
                      source: str) -> tuple[str | None, str | None, str | None]:
        """Merge what is known of a visitor; returns (name, email, last sent version)."""
        def write() -> tuple[str | None, str | None, str | None]:
            self._x("INSERT INTO visitors(visitor_id, source) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING", (visitor_id, source))
            self._x("UPDATE visitors SET name = coalesce(?, name), email = coalesce(?, email) "
                    "WHERE visitor_id = ?", (name, email, visitor_id))
            row = self._x("SELECT name, email, sent FROM visitors WHERE visitor_id = ?",
                          (visitor_id,))[0]
            return row[0], row[1], row[2]

        return await self._run(write)

    async def contact_sent(self, visitor_id: str, version: str) -> None:
        await self._run(self._x, "UPDATE visitors SET sent = ? WHERE visitor_id = ?",
                        (version, visitor_id))

    async def chat_state(self, chat: ChatState, version: int) -> None:
        """The projector's state of a chat (kept only if its version is not older)."""
        agent = chat.agent.name or chat.agent.id if chat.agent else None
        rating = orjson.dumps(chat.rating).decode() if chat.rating is not None else None
        visitor = chat.visitor.id if chat.visitor else None
        closed = chat.closed_at.isoformat() if chat.closed_at else None
        names = orjson.dumps({a.id: a.name for a in chat.agents if a.name}).decode()
        await self._run(self._x, _CHAT_STATE, (chat.id, chat.source, chat.subject, visitor,
                                               agent, rating, int(chat.completed), chat.status,
                                               closed, names, version))

    async def message_state(self, message: MessageState, version: int, text: str | None) -> None:
        """The projector's state of a message; ``text`` is what a transcript may show."""
        who = message.author
        author = who.name or who.role if who else None
        author_id, named = (who.id, int(who.name is not None)) if who else (None, 1)
        posted = iso_utc(message.posted_at)
        await self._run(self._x, _MESSAGE_STATE, (message.chat_id, message.id, posted, author,
                                                  author_id, named, text, posted or "",
                                                  int(message.deleted), version))

    async def forget_chat(self, chat_id: str) -> None:
        """Erase what is kept of a chat (its row and its messages': docs/privacy.md)."""
        def write() -> None:
            self._x("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
            self._x("DELETE FROM chats WHERE chat_id = ?", (chat_id,))

        await self._run(write)

    async def forget_visitor(self, visitor_id: str) -> None:
        """Erase what is kept of a visitor (name, email, the contact version sent)."""
        await self._run(self._x, "DELETE FROM visitors WHERE visitor_id = ?", (visitor_id,))

    async def closed_chat(self, chat_id: str) -> tuple[int, str | None, str | None] | None:
        """For a closed chat: its state's version, closing time and the idempotency key of
        the activity last sent for it; None for a chat that is not (known to be) closed."""
        def read() -> tuple[int, str | None, str | None] | None:
            rows = self._x("SELECT status, version, closed_at, sent_key FROM chats "
                           "WHERE chat_id = ?", (chat_id,))
            if not rows or rows[0][0] != "closed" or rows[0][1] is None:
                return None
            return int(rows[0][1]), rows[0][2], rows[0][3]

        return await self._run(read)

    async def activity_sent(self, chat_id: str, key: str) -> None:
        await self._run(self._x, "UPDATE chats SET sent_key = ? WHERE chat_id = ?", (key, chat_id))

    async def chat_summary(self, chat_id: str) -> dict[str, Any]:
        """The chat's fields and its transcript (the texts its message states gave: none for
        an agent-only note unless ``internal_notes`` is configured, see the consumer)."""
        def read() -> dict[str, Any]:
            rows = self._x("SELECT c.source, c.subject, c.visitor_id, c.agent, c.rating, "
                           "c.completed, v.email, v.name, c.agents FROM chats c LEFT JOIN "
                           "visitors v ON v.visitor_id = c.visitor_id WHERE c.chat_id = ?",
                           (chat_id,))
            row = rows[0] if rows else (None,) * 9
            summary: dict[str, Any] = dict(zip(
                ("source", "subject", "visitor_id", "agent", "rating", "completed", "email",
                 "visitor_name"), row[:8], strict=True))
            # An author its webhook gave only by id takes the name the chat knows now (the
            # name may come later than the message: read-time, as the query API does).
            names: dict[str, str] = orjson.loads(row[8]) if row[8] else {}
            summary["messages"] = [
                (posted, names.get(author_id, author) if not named else author, text)
                for posted, author, author_id, named, text in self._x(
                    "SELECT posted_at, author, author_id, coalesce(author_named, 1), text "
                    "FROM messages WHERE chat_id = ? AND deleted = 0 AND text IS NOT NULL "
                    "ORDER BY posted_at, message_id", (chat_id,))]
            return summary

        return await self._run(read)
