"""What the projector publishes to its state topics when it folds a list of domain events:
the real fold, rows and outbox entries, without a broker or a store."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import msgspec

from contracts import domain as d
from projector.fold import affected, apply
from projector.outbox import covers_of, entry_for, wrap_state
from projector.states import AggregateRef, FoldState
from projector.views import row_for


def published_values(events: Sequence[d.DomainEvent], cuts: Sequence[int], topic: str = "p.events.chat"
                     ) -> tuple[list[bytes], dict[AggregateRef, FoldState]]:
    """Fold ``events`` (one a record, in one partition of ``topic``) in batches ending at
    ``cuts``; each batch's changed aggregates as the state-topic values the projector sends."""
    states: dict[AggregateRef, FoldState] = {}
    last: dict[AggregateRef, dict[tuple[str, int], int]] = {}
    values: list[bytes] = []
    bounds = sorted({0, *cuts, len(events)})
    for lo, hi in pairwise(bounds):
        changed: set[AggregateRef] = set()
        for offset in range(lo, hi):
            for ref in affected(events[offset]):
                states[ref] = apply(ref, states.get(ref), events[offset])
                last.setdefault(ref, {})[(topic, 0)] = offset
                changed.add(ref)
        for ref in sorted(changed):
            row = row_for(ref, states[ref])
            row = msgspec.structs.replace(row, state=wrap_state(row.state, covers_of(last[ref])))
            values.append(entry_for(row).value)
    return values, states
