"""The PostgreSQL store's report roll-ups (:mod:`projector.rollups`): each chat's last fact
with its live state, and the tallies, written inside the commit's transaction by
:func:`apply` and read by the query API. The tables are in :func:`projector.pg_schema.rollup_ddl`.

Several projector instances commit at once, each its own partitions' chats (so a chat's fact
row has one writer) but tallies they share (every chat of a day adds to that day's). A
commit first makes sure every tally it moves exists, then locks them all in key order (so
two commits never wait on each other in a cycle) and writes the sums: no update is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from parley.pg.migrate import Conn
from projector import rollups
from projector.pg_schema import CopyTables
from projector.views import Row

__all__ = ["apply", "live", "tallies"]


def _live_of(row: Row) -> tuple[str | None, int | None, str | None]:
    if row.status is None or row.status == "closed":
        return None, None, None
    return row.status, row.waiting_since, row.agent_id


async def apply(conn: Conn, tables: CopyTables, rows: Sequence[Row]) -> None:
    """Within the caller's transaction: store the chats' facts and live state, and move the
    tallies by the difference (:func:`projector.rollups.changes`), and the agents' days by
    their rows' moves of online time."""
    latest = {row.id: row for row in rows if row.kind == "chat"}
    moves = [(row.id, row.fact) for row in rows if row.kind == "agent" and row.fact]
    if not latest and not moves:
        return
    stored = {str(r[0]): (bytes(r[1]), r[2], r[3], r[4]) for r in await conn.fetch(
        f"SELECT chat_id, fact, status, since, agent FROM {tables.facts} "  # noqa: S608
        "WHERE chat_id = ANY($1::text[]) FOR UPDATE", list(latest))}
    write, deltas = rollups.changes({k: v[0] for k, v in stored.items()},
                                    [(chat_id, row.fact) for chat_id, row in latest.items()],
                                    moves)
    upserts = []
    for chat_id, row in sorted(latest.items()):
        live_state = _live_of(row)
        before = stored.get(chat_id)
        if chat_id in write or before is None or before[1:] != live_state:
            upserts.append((chat_id, row.fact, *live_state))
    if upserts:
        await conn.execute(
            f"INSERT INTO {tables.facts} (chat_id, fact, status, since, agent) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::text[]) "
            "ON CONFLICT (chat_id) DO UPDATE SET fact = excluded.fact, status = excluded.status, "
            "since = excluded.since, agent = excluded.agent",
            *[list(column) for column in zip(*upserts, strict=True)])
    if not deltas:
        return
    keys = sorted(deltas)
    grains, dims, values, periods = ([k[i] for k in keys] for i in range(4))
    await conn.execute(
        f"INSERT INTO {tables.rollups} (grain, dim, period, value, tally) "  # noqa: S608
        "SELECT g, d, p, v, ''::bytea FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
        "AS k(g, d, p, v) ORDER BY g, d, p, v ON CONFLICT DO NOTHING",
        grains, dims, periods, values)
    current = {(str(r[0]), str(r[1]), str(r[3]), int(r[2])): bytes(r[4]) for r in await conn.fetch(
        f"SELECT grain, dim, period, value, tally FROM {tables.rollups} "  # noqa: S608
        "WHERE (grain, dim, period, value) IN (SELECT * FROM unnest($1::text[], $2::text[], "
        "$3::int[], $4::text[])) ORDER BY grain, dim, period, value FOR UPDATE",
        grains, dims, periods, values)}
    merged = rollups.merge(current, deltas)
    await conn.execute(
        f"UPDATE {tables.rollups} AS r SET tally = k.t FROM unnest($1::text[], $2::text[], "  # noqa: S608
        "$3::int[], $4::text[], $5::bytea[]) AS k(g, d, p, v, t) "
        "WHERE r.grain = k.g AND r.dim = k.d AND r.period = k.p AND r.value = k.v",
        grains, dims, periods, values, [merged[key] for key in keys])


async def tallies(conn: Conn, tables: CopyTables, dim: str,
                  reads: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, str, bytes]]:
    """(grain, period, value, tally) of ``dim`` for each (grain, first, last) read."""
    out: list[tuple[str, int, str, bytes]] = []
    for grain, first, last in reads:
        out += [(str(r[0]), int(r[1]), str(r[2]), bytes(r[3])) for r in await conn.fetch(
            f"SELECT grain, period, value, tally FROM {tables.rollups} "  # noqa: S608
            "WHERE grain = $1 AND dim = $2 AND period BETWEEN $3 AND $4 AND tally <> ''::bytea",
            grain, dim, first, last)]
    return out


async def live(conn: Conn, tables: CopyTables) -> tuple[int, int | None, dict[str, int]]:
    waiting = await conn.fetchrow(
        f"SELECT count(*), min(since) FROM {tables.facts} WHERE status = 'waiting'")  # noqa: S608
    agents = {str(r[0]): int(r[1]) for r in await conn.fetch(
        f"SELECT agent, count(*) FROM {tables.facts} WHERE status IN ('active', 'idle') "  # noqa: S608
        "AND agent IS NOT NULL GROUP BY agent")}
    count, since = (0, None) if waiting is None else (int(waiting[0]), waiting[1])
    return count, None if since is None else int(since), agents
