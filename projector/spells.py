"""An agent's status changes in bounded space: the fold, join and totals of
:class:`~projector.states.Spells`. Pure (no I/O).

An agent that changes status ten times a day would otherwise keep 3,650 changes a year on
its row, rewritten on every commit that touches the agent. Instead a change is kept as long
as another may still arrive before it: changes more than
:data:`~projector.states.SETTLE_AFTER` older than the agent's latest are settled, in time
order, into running totals (seconds online, seconds invisible, how many). The row then
holds the changes of the last two days and five numbers, whatever the agent's history.

Order-independent and idempotent within the window: settling is always of the earliest
pending change, and only once a change ``SETTLE_AFTER`` later than the next one exists, so
a change that can still arrive (no more than ``SETTLE_AFTER`` behind the latest) always
sorts after everything settled; the settled totals are the same whatever order the changes
came in. A change arriving later than that (before the boundary, ``pending[0]``) cannot be
placed, and is dropped: its duplicates, too, so redelivery never counts twice.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from itertools import pairwise

from projector.states import SETTLE_AFTER, Spells

__all__ = ["TIMED", "Moved", "add_change", "join_spells", "place", "totals", "walk"]

#: The statuses whose time is measured.
TIMED = ("online", "invisible")

#: A change of the agent's online time: (start, end, +1 or -1) — the interval became
#: online (+1) or stopped being online (-1).
Moved = tuple[datetime, datetime, int]


def add_change(spells: Spells | None, at: datetime, status: str) -> Spells:
    """``spells`` with the change (``at``, ``status``) in it: the same object if it was
    there or arrived too late to place; older changes settled."""
    if spells is None:
        return Spells(pending=((at, status),))
    pending = spells.pending
    item = (at, status)
    index = bisect_left(pending, item)
    if index < len(pending) and pending[index] == item:
        return spells
    if spells.settled and index == 0:
        return spells  # before the boundary: too late to place (see the module docstring)
    return _settle(spells, (*pending[:index], item, *pending[index:]))


def place(spells: Spells | None, at: datetime, status: str) -> tuple[Spells, list[Moved]]:
    """:func:`add_change`, and how the agent's online time moved with it: the difference
    between the online intervals of every change placed (settled or pending; the latest
    status runs on unmeasured) after the change and before it.

    Local and exact: settling changes no interval, and a change placed (never before the
    boundary) splits only the spell it lands in. So the moves of any sequence of changes
    add up to the online intervals of the changes placed, whatever their order — the
    agents' day roll-ups (:mod:`projector.timeline`) are kept by adding them."""
    placed = add_change(spells, at, status)
    if spells is None or placed is spells:
        return placed, []
    pending = spells.pending
    index = bisect_left(pending, (at, status))
    prev = pending[index - 1] if index else None
    after = pending[index] if index < len(pending) else None
    moved: list[Moved] = []
    if after is None:
        if prev is not None and prev[1] == "online" and prev[0] < at:
            moved.append((prev[0], at, 1))  # the latest spell is measured up to the change
    elif at < after[0]:
        was = prev is not None and prev[1] == "online"
        now = status == "online"
        if was != now:  # the spell [at, after) changes status
            moved.append((at, after[0], 1 if now else -1))
    return placed, moved


def walk(spells: Spells | None, changes: Iterable[tuple[datetime, str]]
         ) -> tuple[Spells | None, list[Moved]]:
    """:func:`place` each change in turn: the spells after them all and every move."""
    out: list[Moved] = []
    for at, status in changes:
        spells, moved = place(spells, at, status)
        out += moved
    return spells, out


def _settle(spells: Spells, pending: tuple[tuple[datetime, str], ...]) -> Spells:
    """Settle, earliest first, every pending spell that ends ``SETTLE_AFTER`` or more
    before the latest change."""
    horizon = pending[-1][0] - SETTLE_AFTER
    cut = 0
    while cut + 1 < len(pending) and pending[cut + 1][0] <= horizon:
        cut += 1
    if not cut:
        return Spells(pending=pending, settled=spells.settled, online_s=spells.online_s,
                      invisible_s=spells.invisible_s, first_at=spells.first_at)
    held = {"online": spells.online_s, "invisible": spells.invisible_s}
    for (start, status), (end, _) in pairwise(pending[:cut + 1]):
        if status in held:
            held[status] += (end - start).total_seconds()
    return Spells(pending=pending[cut:], settled=spells.settled + cut, online_s=held["online"],
                  invisible_s=held["invisible"],
                  first_at=spells.first_at if spells.settled else pending[0][0])


def join_spells(a: Spells | None, b: Spells | None) -> Spells | None:
    """The spells of the union of two writers' changes (``projector/pg_merge.py``).

    Exact while neither has settled anything, and when only one writer folds the agent's
    status changes (they are keyed by agent, so all come through one partition: the
    other writers, folding chat events that name the agent, leave ``spells`` empty). Should
    both have settled, the one further on is kept and the other's changes after its
    boundary are added, as if the rest had arrived too late."""
    if a is None or not a.pending:
        return b
    if b is None or not b.pending or a == b:
        return a
    if (b.settled, b.pending[0]) > (a.settled, a.pending[0]):
        a, b = b, a
    out = a
    for at, status in b.pending:
        out = add_change(out, at, status)
    return out


def totals(spells: Spells) -> tuple[dict[str, float], int]:
    """Seconds in each timed status from the first change to the latest, and how many
    changes there were (the latest status runs on, unmeasured)."""
    held = {"online": spells.online_s, "invisible": spells.invisible_s}
    pending = spells.pending
    for (start, status), (end, _) in pairwise(pending):
        if status in held:
            held[status] += (end - start).total_seconds()
    return held, spells.settled + len(pending)
