"""The PostgreSQL store's outbox (``parley_outbox``): a commit records the aggregates it wrote
(their refs, under a token), the state publisher reads them back in commit order with the
rows as they are now, and acknowledges them by token once published (docs/projector.md,
"State topics"). The rows of a copy dropped since are gone: their entries carry no value."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set

from parley.pg.migrate import Conn
from projector.outbox import OutboxEntry, decode_refs, entry_for
from projector.views import Row

__all__ = ["ack_outbox", "outbox_insert", "read_outbox"]


def outbox_insert(schema: str) -> str:
    """The statement a commit records its refs with: ``(token, projection, refs)``."""
    return (f"INSERT INTO {schema}.parley_outbox (token, projection, refs) "  # noqa: S608
            "VALUES ($1, $2, $3)")


async def read_outbox(conn: Conn, schema: str, limit: int, projections: Set[str],
                      rows_of: Callable[[str], str]) -> list[OutboxEntry]:
    """At least ``limit`` entries (whole commits) in commit order, each with its row as
    stored now; ``rows_of(copy)`` is the copy's query for rows by (kind, id) arrays."""
    query = (f"SELECT seq, token, projection, refs FROM {schema}.parley_outbox "  # noqa: S608
             "WHERE seq > $1 ORDER BY seq LIMIT 1")
    out: list[OutboxEntry] = []
    after = 0
    while len(out) < limit:
        commit = await conn.fetchrow(query, after)
        if commit is None:
            break
        after, token, projection = commit[0], commit[1], commit[2]
        refs = decode_refs(bytes(commit[3]))
        found: dict[tuple[str, str], Row] = {}
        if projection in projections:  # a dropped copy's rows are gone
            for kind, id, state, view, chat_id in await conn.fetch(
                    rows_of(projection), [k for k, _ in refs], [i for _, i in refs]):
                found[(kind, id)] = Row(kind=kind, id=id, state=bytes(state), view=bytes(view),
                                        chat_id=chat_id)
        out += [entry_for(row, token, after) if (row := found.get(ref)) is not None
                else OutboxEntry(kind=ref[0], key=ref[1], route=ref[1], value=b"", token=token,
                                 seq=after) for ref in refs]
    return out


async def ack_outbox(conn: Conn, schema: str, tokens: Sequence[int]) -> None:
    """Delete the entries of the commits ``tokens`` (published)."""
    await conn.execute(f"DELETE FROM {schema}.parley_outbox "  # noqa: S608
                       "WHERE token = ANY($1::bigint[])", list(tokens))
