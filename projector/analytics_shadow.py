"""What a rebuild of a copy's analytics writes into its shadow roll-ups, and what a store
offers to run it (:class:`Shadow`). Pure (no I/O): the stores' modules
(:mod:`projector.sqlite_analytics`, :mod:`projector.pg_analytics`) read and write, and
:mod:`projector.analytics_rebuild` drives them.

Two parts are written into the shadow:

* every chat's fact, recomputed with the code running now from the chat's stored fold state
  (:func:`chat_rows`: the row the fold would write, so a measure or roll-up definition
  changed since the chat was folded applies), moved into the shadow by the same difference
  as a commit (:func:`projector.rollups.changes`);
* the agents' online spells, copied from the live days (:func:`online_part`): an agent's row
  keeps two days of status changes, so its spells cannot be refolded from the store, only
  from the log (a full rebuild). The chats' part of each day is not copied: the chats' facts
  bring it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from projector import rollups, timeline
from projector.outbox import unwrap_state
from projector.states import AggregateRef, decode_state
from projector.views import Row, row_for

__all__ = ["Shadow", "chat_rows", "online_part"]


class Shadow(Protocol):
    """A store's side of ``parley projections rebuild analytics`` for one copy."""

    async def begin(self, name: str) -> int:
        """In one transaction: (re)create the copy's shadow roll-ups, put the agents' online
        spells in (:func:`online_part`) and mark the copy, so every commit from then on
        moves the shadow too. Returns how many chats the copy has (for progress)."""
        ...

    async def walk(self, name: str, after: str, limit: int) -> tuple[str | None, int]:
        """Move the shadow by the facts of up to ``limit`` chats with ids after ``after`` (in
        id order), each recomputed from the state stored now, in one transaction that no
        commit of those chats interleaves with. Returns the last id walked (None: no chat
        left) and how many."""
        ...

    async def switch(self, name: str) -> None:
        """In one transaction: drop the live roll-ups, rename the shadow's in their place and
        unmark the copy (StoreError if the copy is not being rebuilt)."""
        ...

    async def abandon(self, name: str) -> None:
        """Drop the copy's shadow and unmark it; the live roll-ups stay as they are."""
        ...

    async def shadowed(self) -> list[str]:
        """The copies whose roll-ups are being rebuilt (or whose rebuild was killed)."""
        ...


def chat_rows(stored: Iterable[tuple[str, bytes]]) -> list[Row]:
    """The rows the fold would write for chats ``(id, stored state)``, built with the code
    running now (their facts included)."""
    return [row_for(AggregateRef("chat", chat_id), decode_state("chat", unwrap_state(raw)[1]))
            for chat_id, raw in stored]


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
