"""The SQLite store's shared commit (a parallel rebuild's one writer, docs/projector.md
"Rebuilds"): visitors' and agents' rows, folded partly in each worker, are joined with the
stored ones inside the writer's transaction (:func:`projector.row_merge.merge_rows`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from projector.pg_merge import MERGED_KINDS
from projector.sqlite_schema import Sql
from projector.views import Row

__all__ = ["in_order", "stored_states"]


def in_order(rows: Sequence[Row], merged: Sequence[Row]) -> list[Row]:
    """``rows`` with each shared row replaced by its ``merged`` one (dropped if merging
    dropped it: another source's), in their order."""
    joined = {(row.kind, row.id): row for row in merged}
    return [row if row.kind not in MERGED_KINDS else joined[(row.kind, row.id)]
            for row in rows if row.kind not in MERGED_KINDS or (row.kind, row.id) in joined]


def stored_states(conn: sqlite3.Connection, sql: Sql, rows: Sequence[Row]) -> dict[tuple[str, str], bytes]:
    """The stored states of ``rows`` (by kind and id), read in the caller's transaction."""
    by_kind: dict[str, list[str]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row.id)
    return {(kind, id): state for kind, ids in by_kind.items()
            for id, state in conn.execute(sql.load, (kind, msgspec.json.encode(ids).decode()))}
