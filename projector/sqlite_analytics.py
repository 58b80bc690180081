"""The SQLite store's side of ``parley projections rebuild analytics``
(:class:`~projector.analytics_shadow.Shadow`): a copy's roll-ups rebuilt into a shadow pair
(``p_<copy>_facts_next``, ``p_<copy>_rollups_next``) beside the live ones, then renamed in.

SQLite has one writer at a time: the rebuild's start, each step of its walk and its switch
are write transactions, and so is every commit of the projector (another process's
included). A commit that follows the start sees the copy in ``parley_analytics`` and moves
the shadow too (:func:`projector.sqlite_rollups.apply`); a step of the walk reads the chats'
states inside its transaction, so it and a commit of one chat are in one order or the other,
and whichever comes second finds the first one's fact stored and moves the tallies by the
difference: the walk and the live commits commute. Readers (WAL) see the live roll-ups until
the switch commits, then the new ones.
"""

from __future__ import annotations

import sqlite3
import uuid

from projector import sqlite_rollups
from projector.analytics_shadow import Walked, changed_views, online_part, rows_of, stale
from projector.errors import UnknownProjection
from projector.rollups import TIMELINE
from projector.sqlite_schema import transaction
from projector.sqlite_workers import Worker
from projector.store import projection_name

__all__ = ["SqliteShadow"]

_NEXT = "_next"


class SqliteShadow:
    """:class:`~projector.analytics_shadow.Shadow` on the store's writer (and reader)."""

    def __init__(self, writer: Worker, reader: Worker) -> None:
        self._w, self._r = writer, reader
        self._token: str | None = None  # set by begin

    def _ours(self, conn: sqlite3.Connection, name: str) -> None:
        """Within the caller's transaction: StaleRebuild unless the copy is marked with this
        rebuild's token."""
        row = conn.execute(f"SELECT token FROM {sqlite_rollups.MARKER} WHERE name = ?",  # noqa: S608
                           (name,)).fetchone()
        if row is None or self._token is None or row[0] != self._token:
            raise stale(name)

    async def begin(self, name: str) -> int:
        name = projection_name(name)
        token = self._token = uuid.uuid4().hex

        def begin(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                _known(conn, name)
                for statement in (*sqlite_rollups.drop(name, _NEXT),
                                  *sqlite_rollups.schema(name, _NEXT)):
                    conn.execute(statement)
                days = [(str(agent), int(day), bytes(blob)) for agent, day, blob in conn.execute(
                    f'SELECT value, period, tally FROM "p_{name}_rollups" '  # noqa: S608
                    "WHERE grain = 'd' AND dim = ? AND length(tally) > 0", (TIMELINE,))]
                conn.executemany(
                    f'INSERT INTO "p_{name}_rollups_next" (grain, dim, period, value, tally) '  # noqa: S608
                    "VALUES (?, ?, ?, ?, ?)",
                    [(g, d, p, v, t) for (g, d, v, p), t in sorted(online_part(days).items())])
                conn.execute(f"INSERT OR REPLACE INTO {sqlite_rollups.MARKER} (name, token) "  # noqa: S608
                             "VALUES (?, ?)", (name, token))
                return int(conn.execute(f'SELECT count(*) FROM "p_{name}_rows" '  # noqa: S608
                                        "WHERE kind IN ('chat', 'agent')").fetchone()[0])

        return await self._w.run(begin)

    async def walk(self, name: str, kind: Walked, after: str, limit: int) -> tuple[str | None, int]:
        name = projection_name(name)

        def walk(conn: sqlite3.Connection) -> tuple[str | None, int]:
            with transaction(conn):
                self._ours(conn, name)
                stored = [(str(id), bytes(state), bytes(view)) for id, state, view in conn.execute(
                    f'SELECT id, state, view FROM "p_{name}_rows" WHERE kind = ? AND id > ? '  # noqa: S608
                    "ORDER BY id LIMIT ?", (kind, after, limit))]
                if not stored:
                    return None, 0
                rows = rows_of(kind, [(id, state) for id, state, _ in stored])
                if kind == "chat":
                    sqlite_rollups.apply_to(conn, name, _NEXT, rows, ())
                conn.executemany(
                    f'INSERT OR REPLACE INTO "p_{name}_views{_NEXT}" (kind, id, view) '  # noqa: S608
                    "VALUES (?, ?, ?)",
                    changed_views(rows, {id: view for id, _, view in stored}))
                return stored[-1][0], len(stored)

        return await self._w.run(walk)

    async def switch(self, name: str) -> None:
        name = projection_name(name)

        def switch(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                self._ours(conn, name)
                conn.execute(f'UPDATE "p_{name}_rows" AS r SET view = n.view '  # noqa: S608
                             f'FROM "p_{name}_views{_NEXT}" AS n WHERE r.kind = n.kind AND r.id = n.id')
                for statement in sqlite_rollups.drop(name):  # the open chats' index with them
                    conn.execute(statement)
                conn.execute(f'DROP TABLE "p_{name}_views{_NEXT}"')
                for table in ("facts", "rollups"):
                    conn.execute(f'ALTER TABLE "p_{name}_{table}{_NEXT}" RENAME TO "p_{name}_{table}"')
                conn.execute(sqlite_rollups.open_index(name))
                conn.execute(f"DELETE FROM {sqlite_rollups.MARKER} WHERE name = ?", (name,))  # noqa: S608

        await self._w.run(switch)

    async def abandon(self, name: str) -> None:
        name = projection_name(name)

        token = self._token

        def abandon(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                row = conn.execute(f"SELECT token FROM {sqlite_rollups.MARKER} WHERE name = ?",  # noqa: S608
                                   (name,)).fetchone()
                if row is not None and token is not None and row[0] != token:
                    return  # another rebuild's shadow now: not ours to drop
                for statement in sqlite_rollups.drop(name, _NEXT):
                    conn.execute(statement)
                conn.execute(f"DELETE FROM {sqlite_rollups.MARKER} WHERE name = ?", (name,))  # noqa: S608

        await self._w.run(abandon)

    async def shadowed(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [str(n) for (n,) in conn.execute(
                f"SELECT name FROM {sqlite_rollups.MARKER} ORDER BY name")]  # noqa: S608

        return await self._r.run(read)


def _known(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM parley_projections WHERE name = ?", (name,)).fetchone() is None:
        raise UnknownProjection(f"projection {name!r} does not exist")
