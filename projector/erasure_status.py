"""``parley visitors forget-status ID``: the erasure ledger of one subject's latest forget.

Per projection copy: how many of the forget's aggregates the copy holds erased (its own
state, the authoritative record: it survives rebuilds) and when the projector said so in
the ledger. Per consumer group: how many aggregates it recorded as processed, and when it
recorded the last. Read from the ledger topic ``<prefix>.erasures`` and the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from contracts.forgotten import ErasureProcessed, ErasureRequest, LedgerEntry
from contracts.topics import PROJECTOR
from projector.forget import erased_in
from projector.store import Store

__all__ = ["ErasureStatus", "GroupStatus", "erasure_status", "latest_request", "render"]


@dataclass
class GroupStatus:
    """One projection copy (``group == "projector"``) or consumer group."""

    group: str
    copy: str | None = None
    live: bool = False
    erased: int | None = None  # copies: aggregates whose state says erased
    aggregates: set[str] = field(default_factory=set)  # recorded in the ledger
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass
class ErasureStatus:
    request: ErasureRequest
    groups: list[GroupStatus]


def latest_request(entries: Sequence[LedgerEntry], id: str) -> ErasureRequest | None:
    """The latest forget of the visitor, chat or subject ``id``."""
    found = None
    for entry in entries:
        if isinstance(entry, ErasureRequest) and (
                id in (entry.visitor, entry.subject) or f"visitor:{id}" in entry.aggregates
                or f"chat:{id}" in entry.aggregates):
            found = entry
    return found


async def erasure_status(store: Store, entries: Sequence[LedgerEntry],
                         request: ErasureRequest) -> ErasureStatus:
    """The status of ``request`` from the ledger ``entries`` and every projection copy."""
    groups: dict[tuple[str, str | None], GroupStatus] = {}
    live = await store.live_projection()
    for copy in await store.list_projections():
        groups[(PROJECTOR, copy)] = GroupStatus(
            group=PROJECTOR, copy=copy, live=copy == live,
            erased=len(await erased_in(store, copy, request.erasure_id, request.aggregates)))
    for entry in entries:
        if not isinstance(entry, ErasureProcessed) or entry.erasure_id != request.erasure_id:
            continue
        status = groups.setdefault((entry.group, entry.copy),
                                   GroupStatus(group=entry.group, copy=entry.copy))
        status.aggregates.add(entry.aggregate)
        status.first_at = entry.at if status.first_at is None else min(status.first_at, entry.at)
        status.last_at = entry.at if status.last_at is None else max(status.last_at, entry.at)
    ordered = sorted(groups.values(), key=lambda g: (g.group != PROJECTOR, g.group, g.copy or ""))
    return ErasureStatus(request=request, groups=ordered)


def render(status: ErasureStatus) -> str:
    """The command's output: one line for the request, one per copy and group."""
    r = status.request
    total = len(r.aggregates)
    lines = [f"erasure {r.erasure_id}: {r.subject}, requested {_iso(r.requested_at)}, "
             f"{total} aggregates ({', '.join(r.aggregates[:3])}{', …' if total > 3 else ''}), "
             f"{r.keys_destroyed} keys destroyed"]
    for g in status.groups:
        recorded = (f"ledger: {len(g.aggregates)} recorded, last at {_iso(g.last_at)}"
                    if g.last_at is not None else "ledger: nothing recorded")
        if g.group == PROJECTOR and g.erased is None:
            lines.append(f"projection {g.copy} (dropped since); {recorded}")
        elif g.group == PROJECTOR:
            done = "done" if g.erased == total else "pending"
            lines.append(f"projection {g.copy}{' (live)' if g.live else ''}  {done}: "
                         f"erased {g.erased}/{total} in its state; {recorded}")
        else:
            lines.append(f"consumer {g.group}  processed {len(g.aggregates)} aggregates, first "
                         f"at {_iso(g.first_at)}, last at {_iso(g.last_at)}")
    return "\n".join(lines) + "\n"


def _iso(at: datetime | None) -> str:
    return "-" if at is None else at.isoformat().replace("+00:00", "Z")
