"""The SQLite store's report roll-ups (:mod:`projector.rollups`): per copy, each chat's last
fact (``p_<copy>_facts``, with its live status) and the tallies (``p_<copy>_rollups``),
written inside the commit's transaction by :func:`apply`, read by the query API.

While ``parley projections rebuild analytics`` rebuilds a copy's roll-ups
(:mod:`projector.sqlite_analytics`), the copy is listed in ``parley_analytics`` and has a
shadow (``p_<copy>_facts_next``, ``p_<copy>_rollups_next``, and ``p_<copy>_views_next``, the
views it recomputed that differ from the stored ones): every commit then moves the shadow
roll-ups by the same difference as the live ones, and drops the shadow views of the rows it
writes (written by the running code, they need no replacing), in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from projector import rollups
from projector.views import Row

__all__ = ["MARKER", "Live", "apply", "apply_to", "drop", "live", "open_index", "schema", "shadowed",
           "tallies"]

#: The copies whose roll-ups are being rebuilt into a shadow pair (created on every open).
MARKER = "parley_analytics"

#: (chats waiting, the earliest waiting since in µs, open chats per agent).
Live = tuple[int, int | None, dict[str, int]]


def schema(name: str, suffix: str = "") -> list[str]:
    """The copy's roll-up tables (``IF NOT EXISTS``: run on every open for older copies);
    ``suffix`` ``_next``: its shadow pair, without the index of open chats (made when the
    shadow is switched in: SQLite cannot rename an index)."""
    facts = [
        f"""CREATE TABLE IF NOT EXISTS "p_{name}_facts{suffix}" (
            chat_id TEXT PRIMARY KEY, fact BLOB NOT NULL, status TEXT, since INTEGER,
            agent TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS "p_{name}_rollups{suffix}" (
            grain TEXT NOT NULL, dim TEXT NOT NULL, period INTEGER NOT NULL, value TEXT NOT NULL,
            tally BLOB NOT NULL, PRIMARY KEY (grain, dim, period, value))""",
    ]
    if suffix:  # the views of chats and agents the rebuild recomputed and found changed
        return [*facts, f"""CREATE TABLE IF NOT EXISTS "p_{name}_views{suffix}" (
            kind TEXT NOT NULL, id TEXT NOT NULL, view BLOB NOT NULL, PRIMARY KEY (kind, id))"""]
    return [*facts, open_index(name)]


def open_index(name: str) -> str:
    # Open chats only: the live report reads them, closed chats (most) are not indexed.
    return (f"""CREATE INDEX IF NOT EXISTS "p_{name}_open" ON "p_{name}_facts" (status, since) """
            "WHERE status IS NOT NULL")


def drop(name: str, suffix: str = "") -> list[str]:
    """Drop the copy's roll-up tables (``suffix`` ``_next``: its shadow, views included)."""
    return [f'DROP TABLE IF EXISTS "p_{name}_facts{suffix}"',
            f'DROP TABLE IF EXISTS "p_{name}_rollups{suffix}"',
            *([f'DROP TABLE IF EXISTS "p_{name}_views{suffix}"'] if suffix else [])]


def shadowed(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the copy's roll-ups are being rebuilt into its shadow pair (read in the
    caller's transaction: a commit holding the write lock sees the rebuild's start or not,
    never half of it)."""
    return conn.execute(f"SELECT 1 FROM {MARKER} WHERE name = ?", (name,)).fetchone() is not None  # noqa: S608


def _live_of(row: Row) -> tuple[object, object, object]:
    if row.status is None or row.status == "closed":
        return None, None, None
    return row.status, row.waiting_since, row.agent_id


def apply(conn: sqlite3.Connection, name: str, rows: Sequence[Row]) -> None:
    """Within the caller's transaction: store the chats' facts and live state, and move
    the tallies by the difference (:func:`projector.rollups.changes`), and the agents' days
    by their rows' moves of online time; the shadow pair too while it is rebuilt."""
    chats = [row for row in rows if row.kind == "chat"]
    agents = [row for row in rows if row.kind == "agent"]
    if not chats and not agents:
        return
    moves = [(row.id, row.fact) for row in agents if row.fact]
    apply_to(conn, name, "", chats, moves)
    if shadowed(conn, name):
        apply_to(conn, name, "_next", chats, moves)
        # These rows' views are the running code's now: nothing for the switch to replace.
        conn.execute(f'DELETE FROM "p_{name}_views_next" WHERE (kind, id) IN '  # noqa: S608
                     "(SELECT value ->> 0, value ->> 1 FROM json_each(?))",
                     (orjson.dumps([(row.kind, row.id) for row in (*chats, *agents)]).decode(),))


def apply_to(conn: sqlite3.Connection, name: str, suffix: str, chats: Sequence[Row],
             moves: Sequence[tuple[str, bytes]]) -> None:
    """:func:`apply` to one pair of tables (``suffix`` ``_next``: the shadow)."""
    if not chats and not moves:
        return
    facts, tallies_ = f'"p_{name}_facts{suffix}"', f'"p_{name}_rollups{suffix}"'
    latest = {row.id: row for row in chats}
    stored = {str(chat_id): (bytes(fact), status, since, agent) for chat_id, fact, status, since, agent
              in conn.execute(f"SELECT chat_id, fact, status, since, agent FROM {facts} "  # noqa: S608
                              "WHERE chat_id IN (SELECT value FROM json_each(?))",
                              (_json_list(latest),))}
    write, deltas = rollups.changes({k: v[0] for k, v in stored.items()},
                                    [(row.id, row.fact) for row in latest.values()], moves)
    upserts = []
    for chat_id, row in latest.items():
        live = _live_of(row)
        before = stored.get(chat_id)
        if chat_id in write or before is None or before[1:] != live:
            upserts.append((chat_id, bytearray(row.fact), *live))
    if upserts:
        conn.executemany(
            f"INSERT INTO {facts} (chat_id, fact, status, since, agent) VALUES (?, ?, ?, ?, ?) "  # noqa: S608
            "ON CONFLICT (chat_id) DO UPDATE SET fact = excluded.fact, status = excluded.status, "
            "since = excluded.since, agent = excluded.agent", upserts)
    if not deltas:
        return
    keys = sorted(deltas)
    current: dict[rollups.Key, bytes] = {}
    for grain, dim, period, value, tally in conn.execute(
            f"SELECT grain, dim, period, value, tally FROM {tallies_} "  # noqa: S608
            "WHERE (grain, dim, period, value) IN (SELECT value ->> 0, value ->> 1, value ->> 3, "
            "value ->> 2 FROM json_each(?))", (_json_keys(keys),)):
        current[(str(grain), str(dim), str(value), int(period))] = bytes(tally)
    merged = rollups.merge(current, deltas)
    conn.executemany(
        f"INSERT INTO {tallies_} (grain, dim, period, value, tally) VALUES (?, ?, ?, ?, ?) "  # noqa: S608
        "ON CONFLICT (grain, dim, period, value) DO UPDATE SET tally = excluded.tally",
        [(g, d, p, v, bytearray(merged[(g, d, v, p)])) for g, d, v, p in keys])


def tallies(conn: sqlite3.Connection, name: str, dim: str,
            reads: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, str, bytes]]:
    """(grain, period, value, tally) of ``dim`` for each (grain, first, last) read."""
    sql = (f'SELECT grain, period, value, tally FROM "p_{name}_rollups" '  # noqa: S608
           "WHERE grain = ? AND dim = ? AND period BETWEEN ? AND ? AND length(tally) > 0")
    out: list[tuple[str, int, str, bytes]] = []
    for grain, first, last in reads:
        out += [(str(g), int(p), str(v), bytes(t))
                for g, p, v, t in conn.execute(sql, (grain, dim, first, last))]
    return out


def live(conn: sqlite3.Connection, name: str) -> Live:
    facts = f'"p_{name}_facts"'
    waiting, since = conn.execute(
        f"SELECT count(*), min(since) FROM {facts} WHERE status = 'waiting'").fetchone()  # noqa: S608
    agents = {str(agent): int(n) for agent, n in conn.execute(
        f"SELECT agent, count(*) FROM {facts} WHERE status IN ('active', 'idle') "  # noqa: S608
        "AND agent IS NOT NULL GROUP BY agent")}
    return int(waiting), None if since is None else int(since), agents


def _json_list(ids: dict[str, Row]) -> str:
    return orjson.dumps(list(ids)).decode()


def _json_keys(keys: list[rollups.Key]) -> str:
    return orjson.dumps(keys).decode()
