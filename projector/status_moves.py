"""How a batch moved each agent's online time: the folder puts it on the agent's row (its
``fact``), and the stores add it to the agent's days (:mod:`projector.timeline`) in the same
commit as the row.

An agent's row keeps only its last two days of status changes (:mod:`projector.spells`), so
the online time of a day whose changes were settled cannot be read back from the row: a
batch that folds a week of an agent's changes settles most of them before its row is
written. The moves are therefore taken as the changes are placed — the batch's status
changes of the agent, placed in turn on the spells it started from — whatever the size of
the batch. Each move is exact and local (:func:`projector.spells.place`), so their sum is
the online time of the changes placed, in any order and however the log is batched; a
redelivered change is not placed again and moves nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from contracts import domain as d
from projector.rollups import moves_for
from projector.spells import walk
from projector.states import AgentFold, AggregateRef, FoldState

__all__ = ["agent_moves"]

log = logging.getLogger("parley.projector.analytics")


def agent_moves(flat: Sequence[tuple[AggregateRef, d.DomainEvent]],
                spans: Sequence[tuple[Any, int, int, int]], failed: set[int],
                refused: Mapping[int, object], base: Mapping[AggregateRef, FoldState],
                work: Mapping[AggregateRef, FoldState]) -> dict[AggregateRef, bytes]:
    """Per agent whose status changes the batch placed, its row's fact
    (:func:`projector.rollups.moves_for`): the applications the fold made — not those of
    records that became dead letters (``failed`` spans), nor ``refused`` ones — replayed
    from the agent's state before the batch (``base``)."""
    changed = {ref for ref, state in work.items() if type(state) is AgentFold
               and _spells(base.get(ref)) is not state.spells}
    if not changed:
        return {}
    changes: dict[AggregateRef, list[tuple[datetime, str]]] = {ref: [] for ref in changed}
    for n, (_, start, end, _) in enumerate(spans):
        if n in failed:
            continue
        for i in range(start, end):
            ref, event = flat[i]
            if type(event) is d.AgentStatusChanged and ref in changes and i not in refused:
                changes[ref].append((event.occurred_at, event.status))
    out: dict[AggregateRef, bytes] = {}
    for ref, placed in changes.items():
        spells, moved = walk(_spells(base.get(ref)), placed)
        folded = work[ref]
        if spells != getattr(folded, "spells", None):
            # The fold placed other changes than these: never seen; the roll-ups would
            # drift, so say so loudly rather than guess.
            log.error("agent %r: its status changes replayed do not give its folded state; "
                      "its online time is not rolled up for this batch", ref.id)
            continue
        if moved:
            out[ref] = moves_for(moved)
    return out


def _spells(state: FoldState | None) -> Any:
    return state.spells if type(state) is AgentFold else None
