"""The SQLite store's outbox reads: each commit's refs read back in commit order with the
states their rows hold now (a dropped copy's rows are gone: their entries carry no value)."""

from __future__ import annotations

import sqlite3

import msgspec

from projector.outbox import OutboxEntry, decode_refs, entry_for
from projector.sqlite_schema import OUTBOX_READ, Sql
from projector.views import Row

__all__ = ["read_outbox"]


def read_outbox(conn: sqlite3.Connection, limit: int) -> list[OutboxEntry]:
    """At least ``limit`` entries (whole commits) in commit order."""
    out: list[OutboxEntry] = []
    after = 0
    while len(out) < limit:
        commit = conn.execute(OUTBOX_READ, (after,)).fetchone()
        if commit is None:
            break
        after, token, projection, refs = commit
        out += _read_back(conn, after, token, projection, decode_refs(bytes(refs)))
    return out


def _read_back(conn: sqlite3.Connection, seq: int, token: int, projection: str,
               refs: list[tuple[str, str]]) -> list[OutboxEntry]:
    """One outbox commit's entries, with the states their rows hold now."""
    wanted: dict[str, list[str]] = {}
    for kind, id in refs:
        wanted.setdefault(kind, []).append(id)
    found: dict[tuple[str, str], Row] = {}
    for kind, ids in wanted.items():
        try:
            cursor = conn.execute(Sql(projection).rows_of, (kind, msgspec.json.encode(ids).decode()))
        except sqlite3.OperationalError:  # the copy was dropped: its rows are gone
            break
        for id, state, view, chat_id in cursor:
            found[(kind, id)] = Row(kind=kind, id=id, state=bytes(state), view=bytes(view),
                                    chat_id=chat_id)
    return [entry_for(row, token, seq) if (row := found.get((kind, id))) is not None else
            OutboxEntry(kind=kind, key=id, route=id, value=b"", token=token, seq=seq)
            for kind, id in refs]
