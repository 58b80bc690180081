"""The SQLite store's schema and statements: the tables of the registry, the live pointer, the
outbox and each copy; the per-copy statements (:class:`Sql`); the multi-row upsert's
chunking; and the migrations of older files. :mod:`projector.sqlite_store` runs them.

Why rows go many per statement: Python's sqlite3 takes the GIL to bind a statement's
parameters and releases it while SQLite runs the statement, so ``executemany`` needs the GIL
twice per row, and a writer thread beside a busy fold waits up to the 5 ms switch interval
each time (docs/benchmarks-history.md, "The commit beside the fold").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from parley.errors import StoreError
from parley.sqlite_wal import use_wal
from projector.sqlite_rollups import schema as rollup_schema
from projector.views import Row

__all__ = ["OUTBOX_DELETE", "OUTBOX_INSERT", "OUTBOX_READ", "ROWS_PER_STATEMENT", "SCHEMA",
           "SCHEMA_VERSION", "Sql", "agent_chats_index", "chunks", "copy_schema", "migrate",
           "rows_per_statement", "transaction"]


# 1: registry, live pointer, per-copy tables. 2: names in the registry and the pointer are
# canonical (lower case), see canonical_names. (parley_verifications came later without a
# new version: every open creates it if missing, and an older Parley never reads it; so did
# parley_analytics, the copies whose roll-ups are being rebuilt: projector.sqlite_analytics.)
SCHEMA_VERSION = 2


SCHEMA = """
CREATE TABLE IF NOT EXISTS parley_projections (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS parley_live (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parley_verifications (
    name TEXT PRIMARY KEY, summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parley_analytics (
    name TEXT PRIMARY KEY, token TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS parley_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, token INTEGER NOT NULL UNIQUE,
    projection TEXT NOT NULL, refs BLOB NOT NULL
);
"""


OUTBOX_INSERT = "INSERT INTO parley_outbox (token, projection, refs) VALUES (?, ?, ?)"


OUTBOX_READ = "SELECT seq, token, projection, refs FROM parley_outbox WHERE seq > ? ORDER BY seq LIMIT 1"


OUTBOX_DELETE = "DELETE FROM parley_outbox WHERE token IN (SELECT value FROM json_each(?))"


def copy_schema(name: str) -> list[str]:
    # Indexes cost write speed, so the secondary indexes are partial ones over chats only
    # (most rows are messages). A chat's messages need none: their ids are
    # "{chat_id}/{message_id}", so the primary key keeps them together (see ``Sql``).
    return [
        f"""CREATE TABLE IF NOT EXISTS "p_{name}_rows" (
            kind TEXT NOT NULL, id TEXT NOT NULL, state BLOB NOT NULL, view BLOB NOT NULL,
            chat_id TEXT, status TEXT, source TEXT, agent_id TEXT, sort_key TEXT NOT NULL,
            PRIMARY KEY (kind, id))""",
        f"""CREATE INDEX IF NOT EXISTS "p_{name}_chats" ON "p_{name}_rows" (sort_key, id)
            WHERE kind = 'chat'""",
        agent_chats_index(name),
        f"""CREATE TABLE IF NOT EXISTS "p_{name}_offsets" (
            topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
            PRIMARY KEY (topic, partition))""",
    ]


def agent_chats_index(name: str) -> str:
    """The chat listing filtered by agent (``GET /api/chats?agent=``, an agent's console page):
    without it, the listing's index is walked reading every chat's agent until a page of the
    agent's is found, all of them for an agent with few chats. Only chats with an agent."""
    return (f"""CREATE INDEX IF NOT EXISTS "p_{name}_agent_chats" ON "p_{name}_rows" """
            "(agent_id, sort_key, id) WHERE kind = 'chat' AND agent_id IS NOT NULL")


class Sql:
    """The statements of one projection copy (identical text, so sqlite3 caches them prepared)."""

    def __init__(self, name: str) -> None:
        # Interpolating table names is safe: projection_name allows only [A-Za-z0-9_].
        rows, offsets = f'"p_{name}_rows"', f'"p_{name}_offsets"'
        self._rows = rows
        self._upserts: dict[int, str] = {}
        self.upsert_offsets = (
            f"INSERT INTO {offsets} (topic, partition, next_offset) VALUES (?, ?, ?) "  # noqa: S608
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
        )
        # One query per kind however many refs: the ids travel as one JSON array.
        self.load = f"SELECT id, state FROM {rows} WHERE kind = ? AND id IN (SELECT value FROM json_each(?))"  # noqa: S608
        self.rows_of = (f"SELECT id, state, view, chat_id FROM {rows} "  # noqa: S608
                        "WHERE kind = ? AND id IN (SELECT value FROM json_each(?))")
        self.offsets = f"SELECT topic, partition, next_offset FROM {offsets}"  # noqa: S608
        self.view = f"SELECT view FROM {rows} WHERE kind = ? AND id = ?"  # noqa: S608
        # INDEXED BY: without statistics the planner would rather sort every chat per page.
        self.chats = (
            f"SELECT sort_key, id, view FROM {rows} INDEXED BY \"p_{name}_chats\" WHERE kind = 'chat'"  # noqa: S608
        )
        # One agent's chats: a range of the agent index (agent_id = ? implies IS NOT NULL).
        self.agent_chats = (
            f"SELECT sort_key, id, view FROM {rows} INDEXED BY \"p_{name}_agent_chats\" "  # noqa: S608
            "WHERE kind = 'chat' AND agent_id = ?"
        )
        # A range of the primary key: ids from "{chat}/" up to "{chat}0" ("0" follows "/"),
        # then the exact chat_id, since a chat id could itself contain "/".
        self.messages = (
            f"SELECT sort_key, id, view FROM {rows} "  # noqa: S608
            "WHERE kind = 'message' AND id > ? AND id < ? AND chat_id = ?"
        )
        self.log_index = (  # the same range, of a log index (projector.log_index)
            f"SELECT sort_key, id, view FROM {rows} "  # noqa: S608
            "WHERE kind = ? AND id > ? AND id < ? AND chat_id = ?"
        )
        self.agents = f"SELECT view FROM {rows} WHERE kind = 'agent' ORDER BY id"  # noqa: S608
        # The log index is no state: not counted, not fingerprinted.
        self.counts = (f"SELECT kind, count(*) FROM {rows} "  # noqa: S608
                       "WHERE kind NOT IN ('chat_log', 'agent_log') GROUP BY kind")
        # The primary key's order (BINARY: UTF-8 bytes, which is code-point order).
        self.keyed = (f"SELECT kind, id, state FROM {rows} WHERE (kind, id) > (?, ?) "  # noqa: S608
                      "AND kind NOT IN ('chat_log', 'agent_log') ORDER BY kind, id LIMIT ?")

    def upsert_rows(self, n: int) -> str:
        """One statement upserting ``n`` rows (``n`` is a power of two: see ``chunks``)."""
        sql = self._upserts.get(n)
        if sql is None:
            values = ", ".join([ROW_VALUES] * n)
            sql = self._upserts[n] = (
                f"INSERT INTO {self._rows} (kind, id, state, view, chat_id, status, source, "  # noqa: S608
                f"agent_id, sort_key) VALUES {values} "
                "ON CONFLICT (kind, id) DO UPDATE SET "
                "state = excluded.state, view = excluded.view, chat_id = excluded.chat_id, "
                "status = excluded.status, source = excluded.source, agent_id = excluded.agent_id, "
                "sort_key = excluded.sort_key"
            )
        return sql


# Most rows per upsert statement: 9 parameters each (ROW_VALUES), under the 32,766
# variables SQLite allows by default (SQLITE_MAX_VARIABLE_NUMBER since 3.32; fewer where the
# library allows fewer, see rows_per_statement). A batch is cut into statements of this
# many rows and then of the powers of two its remainder is made of, so a projection has at
# most a dozen distinct (prepared, cached) upsert statements.
ROWS_PER_STATEMENT = 2048


# One row's placeholders, in row_params' order; the nullable columns come as NULLIF(?, 0).
ROW_VALUES = "(?, ?, ?, ?, NULLIF(?, 0), NULLIF(?, 0), NULLIF(?, 0), NULLIF(?, 0), ?)"


PARAMS_PER_ROW = ROW_VALUES.count("?")


def rows_per_statement(conn: sqlite3.Connection) -> int:
    """The largest power of two of rows, up to 2,048, whose parameters this SQLite binds."""
    most = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // PARAMS_PER_ROW
    size = ROWS_PER_STATEMENT
    while size > max(1, most):
        size //= 2
    return size


def chunks(rows: Sequence[Row], most: int) -> list[tuple[int, list[object]]]:
    """``(n, parameters of n rows)`` for every statement that upserts ``rows``, ``n`` a
    power of two no greater than ``most`` (itself a power of two)."""
    out: list[tuple[int, list[object]]] = []
    start, left = 0, len(rows)
    size = most
    while left:
        while size > left:
            size //= 2
        params: list[object] = []
        for row in rows[start:start + size]:
            params.extend(row_params(row))
        out.append((size, params))
        start += size
        left -= size
    return out


def row_params(row: Row) -> tuple[object, ...]:
    """A row's parameters for ``Sql.upsert_rows``, in the column order of the INSERT.

    Python's sqlite3 binds only exact ``int``, ``float``, ``str`` and ``bytearray`` directly;
    anything else — ``bytes`` and ``None`` included — first goes through its adaptation
    protocol, whose failed attribute lookups format an exception message per parameter:
    measured, a quarter of the cost of an upsert. So the blobs go as ``bytearray`` (stored
    as the same BLOB) and a missing text as integer 0, which the statement turns back into
    NULL with ``NULLIF(?, 0)`` (a TEXT value never equals an INTEGER, so no string is lost).
    """
    return (row.kind, row.id, bytearray(row.state), bytearray(row.view),
            0 if row.chat_id is None else row.chat_id,
            0 if row.status is None else row.status,
            0 if row.source is None else row.source,
            0 if row.agent_id is None else row.agent_id,
            row.sort_key)


def migrate(conn: sqlite3.Connection) -> None:
    # WAL is a property of the file: set once, it stays.
    use_wal(conn)
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store was written by a newer Parley (schema {version} > {SCHEMA_VERSION}): "
                "upgrade Parley"
            )
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if version < 2:
            canonical_names(conn)
        # Copies made before the report roll-ups get their (empty) tables: a rebuild fills them.
        # Copies made before the agent index get it (built here from their rows, once).
        for (name,) in conn.execute("SELECT name FROM parley_projections").fetchall():
            for statement in (*rollup_schema(name), agent_chats_index(name)):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def canonical_names(conn: sqlite3.Connection) -> None:
    """Schema 2: lower-case every name in the registry and the live pointer.

    Before, ``V1`` and ``v1`` could both be registered, yet SQLite resolves both to the same
    tables: they were always one copy, so one registry row is kept for them. The tables
    keep their names (SQLite finds ``p_V1_rows`` as ``p_v1_rows``).
    """
    conn.execute("DELETE FROM parley_projections WHERE rowid NOT IN "
                 "(SELECT min(rowid) FROM parley_projections GROUP BY lower(name))")
    conn.execute("UPDATE parley_projections SET name = lower(name) WHERE name <> lower(name)")
    conn.execute("UPDATE parley_live SET name = lower(name) WHERE name <> lower(name)")


class transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any exception.

    IMMEDIATE takes the write lock up front, so a busy database fails (after
    busy_timeout) before anything is written rather than when upgrading a read lock.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
