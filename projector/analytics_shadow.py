"""What a rebuild of a copy's analytics writes into its shadow roll-ups, and what a store
offers to run it (:class:`Shadow`). Pure (no I/O): the stores' modules
(:mod:`projector.sqlite_analytics`, :mod:`projector.pg_analytics`) read and write, and
:mod:`projector.analytics_rebuild` drives them.

Three parts are written into the shadow:

* every chat's fact, recomputed with the code running now from the chat's stored fold state
  (:func:`rows_of`: the row the fold would write, so a measure or roll-up definition
  changed since the chat was folded applies), moved into the shadow by the same difference
  as a commit (:func:`projector.rollups.changes`);
* every chat's and agent's view, recomputed likewise, where it differs from the stored one
  (:func:`changed_views`: their ``metrics``), to replace it at the switch;
* the agents' online spells, copied from the live days (:func:`online_part`): an agent's row
  keeps two days of status changes, so its spells cannot be refolded from the store, only
  from the log (a full rebuild). The chats' part of each day is not copied: the chats' facts
  bring it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from parley.errors import StoreError
from projector import rollups, timeline
from projector.outbox import unwrap_state
from projector.states import AggregateRef, decode_state
from projector.views import Row, row_for

__all__ = ["WALKED", "Shadow", "StaleRebuild", "Walked", "changed_views", "online_part", "rows_of", "stale"]


class Shadow(Protocol):
    """A store's side of ``parley projections rebuild analytics`` for one copy. ``begin``
    marks the copy with a token of this object's; ``walk`` and ``switch`` refuse
    (:class:`StaleRebuild`) once another rebuild of the copy began (its token replaced), and
    ``abandon`` then leaves the other's shadow alone."""

    async def begin(self, name: str) -> int:
        """In one transaction: (re)create the copy's shadow roll-ups, put the agents' online
        spells in (:func:`online_part`) and mark the copy, so every commit from then on
        moves the shadow too. Returns how many chats and agents the copy has (for
        progress)."""
        ...

    async def walk(self, name: str, kind: Walked, after: str, limit: int) -> tuple[str | None, int]:
        """Up to ``limit`` rows of ``kind`` (``chat`` or ``agent``) with ids after ``after``
        (in id order), each recomputed from the state stored now, in one transaction that no
        commit of those rows interleaves with: a chat's fact moves the shadow roll-ups, and
        a view that differs from the stored one goes into the shadow views. Returns the last
        id walked (None: none left) and how many."""
        ...

    async def switch(self, name: str) -> None:
        """In one transaction: replace the views of the rows in the shadow views, drop the
        live roll-ups, rename the shadow's in their place and unmark the copy (StoreError if
        the copy is not being rebuilt)."""
        ...

    async def abandon(self, name: str) -> None:
        """Drop the copy's shadow and unmark it; the live roll-ups stay as they are."""
        ...

    async def shadowed(self) -> list[str]:
        """The copies whose roll-ups are being rebuilt (or whose rebuild was killed)."""
        ...


class StaleRebuild(StoreError):
    """Another rebuild of the copy's analytics began since this one did (or it was
    abandoned): this one stops, changing nothing."""


def stale(name: str) -> StaleRebuild:
    return StaleRebuild(f"another `parley projections rebuild analytics` of {name!r} began "
                        "since this one (or this one was abandoned): this one stops, the live "
                        "roll-ups unchanged")


#: The kinds a rebuild of the analytics walks, in this order (few agents, many chats).
Walked = Literal["agent", "chat"]
WALKED: tuple[Walked, ...] = ("agent", "chat")


def rows_of(kind: Walked, stored: Iterable[tuple[str, bytes]]) -> list[Row]:
    """The rows the fold would write for aggregates ``(id, stored state)`` of ``kind``,
    built with the code running now (views and a chat's fact included; an agent's moves of
    online time are the fold's, not its state's: none)."""
    return [row_for(AggregateRef(kind, id), decode_state(kind, unwrap_state(raw)[1]))
            for id, raw in stored]


def changed_views(rows: Iterable[Row], stored: dict[str, bytes]) -> list[tuple[str, str, bytes]]:
    """(kind, id, view) of the ``rows`` whose view differs from the one stored (by id)."""
    return [(row.kind, row.id, row.view) for row in rows if stored.get(row.id) != row.view]


def online_part(days: Iterable[tuple[str, int, bytes]]) -> dict[rollups.Key, bytes]:
    """From agents' stored days ``(agent, day, blob)``: the day and month roll-ups holding
    their online spells only (months summed from those days)."""
    deltas: dict[rollups.Key, rollups.Delta] = {}
    for agent, day, blob in days:
        online = timeline.decode_day(blob).online
        if not online:
            continue
        deltas[("d", rollups.TIMELINE, agent, day)] = timeline.Day(
            used=timeline.Usage(levels={}), online=dict(online), chats={})
        deltas.setdefault(("m", rollups.TIMELINE, agent, rollups.month_of(day)),
                          timeline.Usage(levels={}))
    return {key: blob for key, blob in rollups.merge({}, deltas).items() if blob}
