"""The PostgreSQL store's tables: versioned migrations, and the DDL and statements of a copy.

Layout in the configured schema (``?schema=`` in the store URL, default ``public``):

* ``parley_migrations`` — versions applied per component (:mod:`parley.pg.migrate`);
* ``parley_projections`` — the registry of projection copies; ``parley_live`` — the one-row
  pointer to the copy that serves reads;
* ``parley_outbox`` — state changes committed and not yet published (one per store);
* per copy ``p_<name>_rows`` (kind, id, encoded fold state, JSON view, listing columns) and
  ``p_<name>_offsets`` (next offset per topic partition), plus two partial indexes over
  chats (the listing's order, and by agent).

Text that listings order by (``kind``, ``id``, ``chat_id``, ``sort_key``) uses the ``"C"``
collation: byte order, which for UTF-8 is code point order — what SQLite and Python compare,
so every store pages identically, whatever the database's locale.

Copy tables are created by ``create_projection``, not by a migration; a later migration that
changes them must alter every copy listed in ``parley_projections`` (as version 2 does).

Projection names are canonical (lower case, :func:`projector.store.projection_name`) in the
registry, the live pointer and the table names, as in the SQLite store (whose table names
ignore case), so ``V1`` and ``v1`` are one copy in every store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from parley.errors import StoreError
from parley.pg.migrate import Conn, Migration, advisory_key, quote_ident
from projector.views import Row

__all__ = ["STORE_MIGRATIONS", "CopySql", "CopyTables", "copy_ddl", "rollup_ddl", "shadow_names"]

# PostgreSQL truncates identifiers to 63 bytes; "p_" + name + "_offsets" must fit, and two
# long names that share a prefix must not collide: long names are shortened and hashed.
_MAX_BASE = 48


class CopyTables:
    """Qualified, quoted names of one projection copy's tables (``name`` as validated)."""

    __slots__ = ("agent_chats_index", "analytics_key", "base", "chats_index", "facts",
                 "facts_next", "marker", "name", "offsets", "open_index", "rollups",
                 "rollups_next", "rows", "views_next")

    def __init__(self, schema_quoted: str, name: str) -> None:
        self.name = name
        base = f"p_{name}"
        if len(base) > _MAX_BASE:
            digest = hashlib.blake2b(name.encode(), digest_size=5).hexdigest()
            base = f"{base[:_MAX_BASE - 11]}_{digest}"
        self.base = base
        self.rows = f"{schema_quoted}.{quote_ident(base + '_rows')}"
        self.offsets = f"{schema_quoted}.{quote_ident(base + '_offsets')}"
        self.chats_index = quote_ident(base + "_chats")
        self.agent_chats_index = quote_ident(base + "_agent_chats")
        # The report roll-ups (projector/pg_rollups.py).
        self.facts = f"{schema_quoted}.{quote_ident(base + '_facts')}"
        self.rollups = f"{schema_quoted}.{quote_ident(base + '_rollups')}"
        self.open_index = quote_ident(base + "_open")
        # The shadow roll-ups of `parley projections rebuild analytics` (projector/pg_analytics.py),
        # the copies being rebuilt (migration 7), and the lock a commit takes shared to read
        # whether its copy is (the rebuild's start and switch take it exclusive).
        self.facts_next = f"{schema_quoted}.{quote_ident(base + '_facts_next')}"
        self.rollups_next = f"{schema_quoted}.{quote_ident(base + '_rollups_next')}"
        self.views_next = f"{schema_quoted}.{quote_ident(base + '_views_next')}"
        self.marker = f"{schema_quoted}.parley_analytics"
        self.analytics_key = advisory_key(schema_quoted, "analytics", name)


def copy_ddl(tables: CopyTables) -> list[str]:
    """Statements creating one copy's tables (idempotent)."""
    # fillfactor 85: room on each page for the new version of a row, so updates of rows whose
    # indexed columns do not change (messages, visitors, agents) stay on the page (HOT).
    return [
        f"""CREATE TABLE IF NOT EXISTS {tables.rows} (
            kind TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
            state BYTEA NOT NULL, view BYTEA NOT NULL, chat_id TEXT COLLATE "C",
            status TEXT, source TEXT, agent_id TEXT, sort_key TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (kind, id)) WITH (fillfactor = 85)""",
        # The chat listing; a chat's messages need no index of their own: their ids are
        # "{chat_id}/{message_id}", so the primary key keeps them together.
        f"""CREATE INDEX IF NOT EXISTS {tables.chats_index} ON {tables.rows} (sort_key, id)
            WHERE kind = 'chat'""",
        agent_chats_ddl(tables),
        f"""CREATE TABLE IF NOT EXISTS {tables.offsets} (
            topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
            PRIMARY KEY (topic, partition))""",
    ]


def agent_chats_ddl(tables: CopyTables) -> str:
    """The chat listing filtered by agent (``GET /api/chats?agent=``, an agent's console
    page): a range of this index rather than a walk of the listing's. Only chats with an
    agent."""
    return (f"""CREATE INDEX IF NOT EXISTS {tables.agent_chats_index} ON {tables.rows} """
            """(agent_id, sort_key, id) WHERE kind = 'chat' AND agent_id IS NOT NULL""")


def rollup_ddl(tables: CopyTables, *, shadow: bool = False) -> list[str]:
    """A copy's report roll-up tables (idempotent): each chat's last fact and live state,
    and the tallies (projector/rollups.py). ``shadow``: the pair a rebuild of the analytics
    fills, its index and keys named so that the switch can rename them to the live names
    (``SHADOW_NAMES``; PostgreSQL would cut a long name's ``…_next_pkey``)."""
    facts, rollups = (tables.facts_next, tables.rollups_next) if shadow else (tables.facts, tables.rollups)
    fk, rk, open_ = (shadow_names(tables) if shadow else
                     (tables.base + "_facts_pkey", tables.base + "_rollups_pkey", tables.base + "_open"))
    views = [
        # The views of chats and agents the rebuild recomputed and found changed.
        f"""CREATE TABLE IF NOT EXISTS {tables.views_next} (
            kind TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, view BYTEA NOT NULL,
            CONSTRAINT {quote_ident(tables.base + "_vnk")} PRIMARY KEY (kind, id))""",
    ] if shadow else []
    return [*views,
        f"""CREATE TABLE IF NOT EXISTS {facts} (
            chat_id TEXT COLLATE "C", fact BYTEA NOT NULL, status TEXT,
            since BIGINT, agent TEXT, CONSTRAINT {quote_ident(fk)} PRIMARY KEY (chat_id))""",
        f"""CREATE INDEX IF NOT EXISTS {quote_ident(open_)} ON {facts} (status, since)
            WHERE status IS NOT NULL""",
        f"""CREATE TABLE IF NOT EXISTS {rollups} (
            grain TEXT COLLATE "C" NOT NULL, dim TEXT COLLATE "C" NOT NULL,
            period INTEGER NOT NULL, value TEXT COLLATE "C" NOT NULL, tally BYTEA NOT NULL,
            CONSTRAINT {quote_ident(rk)} PRIMARY KEY (grain, dim, period, value))""",
    ]


def shadow_names(tables: CopyTables) -> tuple[str, str, str]:
    """The shadow pair's key and index names (facts' key, tallies' key, open chats' index)."""
    return tables.base + "_fnk", tables.base + "_rnk", tables.base + "_open_n"


class CopySql:
    """The statements of one projection copy (same text each time: asyncpg caches them prepared)."""

    def __init__(self, tables: CopyTables) -> None:
        rows, offsets = tables.rows, tables.offsets
        self.tables = tables
        # One statement per batch whatever its size: the columns travel as arrays.
        self.upsert_rows = (
            f"INSERT INTO {rows} (kind, id, state, view, chat_id, status, source, agent_id, sort_key) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], "
            "$6::text[], $7::text[], $8::text[], $9::text[]) "
            "ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, view = excluded.view, "
            "chat_id = excluded.chat_id, status = excluded.status, source = excluded.source, "
            "agent_id = excluded.agent_id, sort_key = excluded.sort_key"
        )
        # Offsets only move forward (rule 3 of the module docstring); RETURNING tells which moved.
        self.upsert_offsets = (
            f"INSERT INTO {offsets} AS o (topic, partition, next_offset) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) "
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset "
            "WHERE o.next_offset <= excluded.next_offset RETURNING topic, partition"
        )
        self.load = f"SELECT id, state FROM {rows} WHERE kind = $1 AND id = ANY($2::text[])"  # noqa: S608
        self.rows_of = (
            f"SELECT r.kind, r.id, r.state, r.view, r.chat_id FROM {rows} r "  # noqa: S608
            "JOIN unnest($1::text[], $2::text[]) AS q(kind, id) ON r.kind = q.kind AND r.id = q.id"
        )
        self.load_pairs = (
            f"SELECT r.kind, r.id, r.state FROM {rows} r "  # noqa: S608
            "JOIN unnest($1::text[], $2::text[]) AS q(kind, id) ON r.kind = q.kind AND r.id = q.id"
        )
        self.offsets = f"SELECT topic, partition, next_offset FROM {offsets}"  # noqa: S608
        self.view = f"SELECT view FROM {rows} WHERE kind = $1 AND id = $2"  # noqa: S608
        self.chats = f"SELECT sort_key, id, view FROM {rows} WHERE kind = 'chat'"  # noqa: S608
        # A range of the primary key ("{chat}/" up to "{chat}0"), then the exact chat id,
        # since a chat id may itself contain "/".
        self.messages = (
            f"SELECT sort_key, id, view FROM {rows} "  # noqa: S608
            "WHERE kind = 'message' AND id > $1 AND id < $2 AND chat_id = $3"
        )
        self.log_index = (  # the same range, of a log index (projector.log_index)
            f"SELECT sort_key, id, view FROM {rows} "  # noqa: S608
            "WHERE kind = $1 AND id > $2 AND id < $3 AND chat_id = $4"
        )
        self.agents = f"SELECT view FROM {rows} WHERE kind = 'agent' ORDER BY id"  # noqa: S608
        # The log index is no state: not counted, not fingerprinted.
        self.counts = (f"SELECT kind, count(*) FROM {rows} "  # noqa: S608
                       "WHERE kind NOT IN ('chat_log', 'agent_log') GROUP BY kind")
        # Hashed in the database: only 32 bytes and the covers (the head of a wrapped state,
        # see projector.outbox.wrap_state) travel per row. Keys are COLLATE "C": the primary
        # key's order is code-point order.
        self.keyed = (
            "SELECT kind, id, sha256(state), CASE WHEN length(state) < 5 THEN ''::bytea "  # noqa: S608
            "WHEN get_byte(state, 0) = 193 THEN substring(state FROM 1 FOR 5 + ("
            "get_byte(state, 1)::bigint << 24 | get_byte(state, 2) << 16 | "
            "get_byte(state, 3) << 8 | get_byte(state, 4))::int) ELSE ''::bytea END "
            f"FROM {rows} WHERE (kind, id) > ($1, $2) AND kind NOT IN ('chat_log', 'agent_log') "
            "ORDER BY kind, id LIMIT $3"
        )


def _v1(schema: str) -> list[str]:
    return [
        f"""CREATE TABLE {schema}.parley_projections (
            name TEXT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {schema}.parley_live (
            one INTEGER PRIMARY KEY CHECK (one = 1), name TEXT NOT NULL)""",
    ]


async def _v2_canonical_names(conn: Conn, schema: str) -> None:
    """Rename every copy whose name is not in lower case, its tables and indexes with it.

    Two copies whose names differ only in case were distinct here (quoted identifiers keep
    case) but are one name now: the migration then stops, changing nothing, and says which
    copy to drop with the Parley that made them.
    """
    quoted = quote_ident(schema)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(schema, "ddl"))
    names = [str(r[0]) for r in await conn.fetch(f"SELECT name FROM {quoted}.parley_projections")]  # noqa: S608
    live = await conn.fetchval(f"SELECT name FROM {quoted}.parley_live WHERE one = 1")  # noqa: S608
    folded: dict[str, list[str]] = {}
    for name in sorted(names):
        folded.setdefault(name.lower(), []).append(name)
    for same in folded.values():
        if len(same) > 1:
            spare = [n for n in same if n != live]
            raise StoreError(
                f"PostgreSQL schema {schema!r} holds projection copies {', '.join(map(repr, same))}, "
                "whose names differ only in case; this Parley compares names ignoring case: "
                f"drop {' or '.join(map(repr, spare))} with the Parley that made them "
                "(`parley projections drop NAME`), then start this one")
    for name in names:
        if name == name.lower():
            continue
        old, new = CopyTables(quoted, name), CopyTables(quoted, name.lower())
        for suffix in ("_rows", "_offsets"):
            await conn.execute(f"ALTER TABLE IF EXISTS {quoted}.{quote_ident(old.base + suffix)} "
                               f"RENAME TO {quote_ident(new.base + suffix)}")
            await conn.execute(f"ALTER INDEX IF EXISTS {quoted}.{quote_ident(old.base + suffix + '_pkey')} "
                               f"RENAME TO {quote_ident(new.base + suffix + '_pkey')}")
        await conn.execute(f"ALTER INDEX IF EXISTS {quoted}.{old.chats_index} RENAME TO {new.chats_index}")
        for table in ("parley_projections", "parley_live"):
            await conn.execute(f"UPDATE {quoted}.{table} SET name = $1 WHERE name = $2",  # noqa: S608
                               new.name, name)


def _v3(schema: str) -> list[str]:
    return [
        f"""CREATE TABLE {schema}.parley_outbox (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, token BIGINT NOT NULL UNIQUE,
            projection TEXT NOT NULL, refs BYTEA NOT NULL)""",
    ]


def _v4(schema: str) -> list[str]:
    return [
        f"""CREATE TABLE {schema}.parley_verifications (
            name TEXT PRIMARY KEY, summary TEXT NOT NULL)""",
    ]


async def _v5_rollups(conn: Conn, schema: str) -> None:
    """The report roll-up tables of every copy made before them (empty: a rebuild fills
    them)."""
    quoted = quote_ident(schema)
    for (name,) in await conn.fetch(f"SELECT name FROM {quoted}.parley_projections"):  # noqa: S608
        for statement in rollup_ddl(CopyTables(quoted, str(name))):
            await conn.execute(statement)


async def _v6_agent_chats(conn: Conn, schema: str) -> None:
    """The agent index of every copy made before it (built from the copy's rows)."""
    quoted = quote_ident(schema)
    for (name,) in await conn.fetch(f"SELECT name FROM {quoted}.parley_projections"):  # noqa: S608
        await conn.execute(agent_chats_ddl(CopyTables(quoted, str(name))))


def _v7(schema: str) -> list[str]:
    return [
        f"""CREATE TABLE {schema}.parley_analytics (
            name TEXT PRIMARY KEY, token TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    ]


#: The store's migrations, oldest first (see :mod:`parley.pg.migrate` for the rules).
STORE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="projection registry and live pointer", statements=_v1),
    Migration(version=2, description="projection names in lower case",
              statements=lambda schema: [], run=_v2_canonical_names),
    Migration(version=3, description="outbox of state changes to publish", statements=_v3),
    Migration(version=4, description="verification summaries of rebuilt copies", statements=_v4),
    Migration(version=5, description="report roll-up tables of every copy",
              statements=lambda schema: [], run=_v5_rollups),
    Migration(version=6, description="index of each copy's chats by agent",
              statements=lambda schema: [], run=_v6_agent_chats),
    Migration(version=7, description="copies whose report roll-ups are being rebuilt",
              statements=_v7),
)


def upsert_columns(rows: Sequence[Row]) -> list[list[object]]:
    """Rows as the nine column arrays of :attr:`CopySql.upsert_rows` (Row's fields are in
    column order)."""
    return [[getattr(row, field) for row in rows] for field in _UPSERTED]


_UPSERTED = ("kind", "id", "state", "view", "chat_id", "status", "source", "agent_id",
             "sort_key")
