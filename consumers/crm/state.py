"""What the CRM consumer remembers between events (SQLite, ``<data_dir>/crm.db``): each
chat's messages (for the transcript), its visitor, agent and rating, and which contact
version was last sent. Every write is an idempotent upsert, so redelivered events are
harmless; the CRM itself deduplicates requests by idempotency key."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from parley.private_files import private_sqlite

__all__ = ["CrmState"]

T = TypeVar("T")
SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS visitors (visitor_id TEXT PRIMARY KEY, name TEXT, email TEXT,
    source TEXT, sent TEXT);
CREATE TABLE IF NOT EXISTS chats (chat_id TEXT PRIMARY KEY, source TEXT, subject TEXT,
    visitor_id TEXT, agent TEXT, rating TEXT, completed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (chat_id TEXT NOT NULL, message_id TEXT NOT NULL,
    posted_at TEXT, author TEXT, text TEXT, text_at TEXT, deleted INTEGER NOT NULL DEFAULT 0,
    internal INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (chat_id, message_id));
"""
# A state file from before agent-only notes were tracked gets the column (notes in it are
# already absent: their text was never stored).
_ADD_INTERNAL = "ALTER TABLE messages ADD COLUMN internal INTEGER NOT NULL DEFAULT 0"
CHAT_FIELDS = ("source", "subject", "visitor_id", "agent", "rating")


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
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            if "internal" not in columns:
                self._db.execute(_ADD_INTERNAL)

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

    async def message(self, chat_id: str, message_id: str, *, text: str | None, text_at: str,
                      posted_at: str | None = None, author: str | None = None,
                      deleted: bool = False, internal: bool = False) -> None:
        """Merge what one event says of a message; ``internal`` (an agent-only note) is
        grow-only, so an edit that does not repeat the flag keeps the note internal."""
        def write() -> None:
            self._x(
                "INSERT INTO messages(chat_id, message_id, posted_at, author, text, text_at, "
                "deleted, internal) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(chat_id, message_id) DO UPDATE "
                "SET posted_at = coalesce(messages.posted_at, excluded.posted_at), "
                "author = coalesce(messages.author, excluded.author), "
                "deleted = max(messages.deleted, excluded.deleted), "
                "internal = max(messages.internal, excluded.internal), "
                "text = CASE WHEN excluded.text_at >= coalesce(messages.text_at, '') "
                "AND excluded.text IS NOT NULL THEN excluded.text ELSE messages.text END, "
                "text_at = max(coalesce(messages.text_at, ''), excluded.text_at)",
                (chat_id, message_id, posted_at, author, text, text_at, int(deleted),
                 int(internal)))

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

    async def chat_summary(self, chat_id: str, *, internal_notes: bool = False) -> dict[str, Any]:
        """The chat's fields and its transcript (agent-only notes only if ``internal_notes``)."""
        def read() -> dict[str, Any]:
            rows = self._x("SELECT c.source, c.subject, c.visitor_id, c.agent, c.rating, "
                           "c.completed, v.email, v.name FROM chats c LEFT JOIN visitors v "
                           "ON v.visitor_id = c.visitor_id WHERE c.chat_id = ?", (chat_id,))
            summary: dict[str, Any] = dict(zip(
                ("source", "subject", "visitor_id", "agent", "rating", "completed", "email",
                 "visitor_name"), rows[0] if rows else (None,) * 8, strict=True))
            summary["messages"] = self._x(
                "SELECT posted_at, author, text FROM messages WHERE chat_id = ? AND deleted = 0 "
                "AND text IS NOT NULL AND (internal = 0 OR ?) ORDER BY posted_at, message_id",
                (chat_id, int(internal_notes)))
            return summary

        return await self._run(read)
