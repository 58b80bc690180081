"""Merging a batch's rows with the rows already stored: how several writers share one copy.

Pure (no I/O): the store reads the stored states of the batch's rows of
:data:`~projector.pg_merge.MERGED_KINDS` inside its commit transaction (holding their lock)
and :func:`merge_rows` joins them in (:func:`projector.pg_merge.join`), so whatever stale
or partial state a writer folded from, the row written is what one writer folding every
event would have written. Used by the PostgreSQL store (several projector instances) and by
the SQLite store of a parallel rebuild (several worker processes taking turns at the write
lock, :mod:`projector.rebuild_worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import msgspec

from projector.outbox import join_covers, unwrap_state, wrap_state
from projector.pg_merge import MERGED_KINDS, join
from projector.rollups import join_moves
from projector.states import AggregateRef, decode_state, encode_state
from projector.views import Row, row_for

__all__ = ["latest_rows", "merge_rows", "shared_rows"]

log = logging.getLogger("parley.projector.owners")


def latest_rows(rows: Sequence[Row]) -> dict[tuple[str, str], Row]:
    """The last row of each aggregate of a commit — but an agent's ``fact`` (how a batch
    moved its online time: projector.status_moves) is a delta, so the last row carries
    every one of its rows' moves."""
    out: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row.kind, row.id)
        prior = out.get(key)
        if prior is not None and row.kind == "agent" and prior.fact:
            row = msgspec.structs.replace(row, fact=join_moves(prior.fact, row.fact))
        out[key] = row
    return out


def shared_rows(batch: Sequence[Row]) -> list[Row]:
    """The rows of ``batch`` that several partitions write (whose stored state to read)."""
    return [row for row in batch if row.kind in MERGED_KINDS]


def merge_rows(batch: Sequence[Row], stored: Mapping[tuple[str, str], bytes]) -> list[Row]:
    """``batch`` with every row whose ``(kind, id)`` has a ``stored`` state joined with it.

    A state of another source than the stored one is not joined but dropped (logged): the
    source that committed the row first owns it (:mod:`projector.owners`), so a foreign write
    cannot win through the merge.
    """
    out: list[Row] = []
    for row in batch:
        old = stored.get((row.kind, row.id))
        if old is None or old == row.state:
            out.append(row)
            continue
        old_covers, old_state = unwrap_state(old)
        covers, new_state = unwrap_state(row.state)
        mine, theirs = decode_state(row.kind, old_state), decode_state(row.kind, new_state)
        if mine.source is not None and theirs.source not in (None, mine.source):
            # Two writers raced to claim one id for two sources (each folder saw no
            # owner yet): the first committed keeps it, as one writer would have.
            log.warning("%s %r belongs to source %r: a state from source %r was not "
                        "merged into it", row.kind, row.id, mine.source, theirs.source)
            continue
        state = join(mine, theirs)
        joined = join_covers(old_covers, covers)
        # Usually the stored state is already folded into the new one (one writer).
        if encode_state(state) == new_state and joined == covers:
            out.append(row)
            continue
        rebuilt = row_for(AggregateRef(row.kind, row.id), state)  # type: ignore[arg-type]
        # An agent's fact is what this writer's batch moved (projector.status_moves), not a
        # function of its state: it stays the writer's.
        fact = row.fact if row.kind == "agent" else rebuilt.fact
        out.append(msgspec.structs.replace(rebuilt, state=wrap_state(rebuilt.state, joined),
                                           covers=joined, fact=fact))
    return out
