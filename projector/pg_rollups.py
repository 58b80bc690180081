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

__all__ = ["apply", "apply_to", "live", "lock_facts", "tallies"]


def _live_of(row: Row) -> tuple[str | None, int | None, str | None]:
    if row.status is None or row.status == "closed":
        return None, None, None
    return row.status, row.waiting_since, row.agent_id


async def apply(conn: Conn, tables: CopyTables, rows: Sequence[Row]) -> None:
    """Within the caller's transaction: store the chats' facts and live state, and move the
    tallies by the difference (:func:`projector.rollups.changes`), and the agents' days by
    their rows' moves of online time; the shadow roll-ups too while a rebuild of the
    analytics fills them (:mod:`projector.pg_analytics`)."""
    latest = {row.id: row for row in rows if row.kind == "chat"}
    agents = [row for row in rows if row.kind == "agent"]
    if not latest and not agents:
        return
    moves = [(row.id, row.fact) for row in agents if row.fact]
    # The caller holds the copy's analytics lock shared since its transaction began
    # (postgres_store.commit): a rebuild's start and switch are before it or after it whole.
    shadowed = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {tables.marker} WHERE name = $1)", tables.name)  # noqa: S608
    await apply_to(conn, tables.facts, tables.rollups, latest, moves)
    if shadowed:
        await apply_to(conn, tables.facts_next, tables.rollups_next, latest, moves, walked=True)
        # These rows' views are the running code's now: nothing for the switch to replace.
        keys = [("chat", chat_id) for chat_id in latest] + [("agent", row.id) for row in agents]
        await conn.execute(
            f"DELETE FROM {tables.views_next} WHERE (kind, id) IN "  # noqa: S608
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [k for k, _ in keys], [i for _, i in keys])


#: A chat's stored fact and live state (status, waiting since, agent).
Stored = tuple[bytes, object, object, object]


async def lock_facts(conn: Conn, facts: str, chat_ids: Sequence[str], *,
                     create: bool = True) -> dict[str, Stored]:
    """The facts and live state stored for ``chat_ids`` in ``facts``, locked until the end of
    the caller's transaction; with ``create``, a chat with none gets an empty one first, so
    that it is locked too (a chat the walk and a commit both write)."""
    ids = sorted(chat_ids)
    if create:
        await conn.execute(
            f"INSERT INTO {facts} (chat_id, fact) SELECT unnest($1::text[]), ''::bytea "
            "ON CONFLICT DO NOTHING", ids)
    return {str(r[0]): (bytes(r[1]), r[2], r[3], r[4]) for r in await conn.fetch(
        f"SELECT chat_id, fact, status, since, agent FROM {facts} "  # noqa: S608
        "WHERE chat_id = ANY($1::text[]) ORDER BY chat_id FOR UPDATE", ids)}


async def apply_to(conn: Conn, facts: str, tallies_: str, latest: dict[str, Row],
                   moves: Sequence[tuple[str, bytes]], *, walked: bool = False) -> None:
    """:func:`apply` to one pair of tables. ``walked``: the shadow pair, which a rebuild's
    walk writes as well as the commits (each chat's row then locked first)."""
    if not latest and not moves:
        return
    # The live pair has one writer per chat (its partition's): no empty rows to lock first.
    stored = await lock_facts(conn, facts, list(latest), create=walked)
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
            f"INSERT INTO {facts} (chat_id, fact, status, since, agent) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::text[]) "
            "ON CONFLICT (chat_id) DO UPDATE SET fact = excluded.fact, status = excluded.status, "
            "since = excluded.since, agent = excluded.agent",
            *[list(column) for column in zip(*upserts, strict=True)])
    if not deltas:
        return
    keys = sorted(deltas)
    grains, dims, values, periods = ([k[i] for k in keys] for i in range(4))
    await conn.execute(
        f"INSERT INTO {tallies_} (grain, dim, period, value, tally) "  # noqa: S608
        "SELECT g, d, p, v, ''::bytea FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
        "AS k(g, d, p, v) ORDER BY g, d, p, v ON CONFLICT DO NOTHING",
        grains, dims, periods, values)
    current = {(str(r[0]), str(r[1]), str(r[3]), int(r[2])): bytes(r[4]) for r in await conn.fetch(
        f"SELECT grain, dim, period, value, tally FROM {tallies_} "  # noqa: S608
        "WHERE (grain, dim, period, value) IN (SELECT * FROM unnest($1::text[], $2::text[], "
        "$3::int[], $4::text[])) ORDER BY grain, dim, period, value FOR UPDATE",
        grains, dims, periods, values)}
    merged = rollups.merge(current, deltas)
    await conn.execute(
        f"UPDATE {tallies_} AS r SET tally = k.t FROM unnest($1::text[], $2::text[], "  # noqa: S608
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
