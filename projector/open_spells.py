"""An agent's open spell — the time since its latest status change, in that status — counted
at read time, up to the time of the request (docs/analytics.md, "The open spell").

The stored view and the roll-ups count only closed spells: the fold has no clock, and the
time after an agent's latest change belongs to no spell until its next change closes it
(:mod:`projector.spells`). So the query API adds it when it serves an agent: to ``online_s``
(or ``invisible_s``) the seconds since ``measured_to``, and to the agent's ``time`` what
being online over [``measured_to``, now) adds to each day the spell crosses — its online
time, and its occupied time and concurrency with the chats stored on those days
(:func:`timeline.add_day` of the stored day, nothing stored). Never stored, never published:
when the next change comes, the fold closes the spell and the roll-ups count it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import msgspec

from contracts.state import AgentMetrics
from projector import rollups, timeline
from projector.store import Store

__all__ = ["counted", "open_usage", "span_days"]

_EPOCH = date(1970, 1, 1)


def _open(metrics: AgentMetrics, now: datetime) -> float:
    """Seconds of the open spell at ``now`` (0 without a latest change, or before it)."""
    if metrics.measured_to is None or metrics.last_status is None:
        return 0.0
    return max(0.0, (now - metrics.measured_to).total_seconds())


def counted(metrics: AgentMetrics, now: datetime) -> AgentMetrics:
    """``metrics`` with the open spell counted in ``online_s`` or ``invisible_s`` (by its
    status: ``last_status``) up to ``now``."""
    seconds = _open(metrics, now)
    if not seconds:
        return metrics
    if metrics.last_status == "online":
        return msgspec.structs.replace(metrics, online_s=round(metrics.online_s + seconds, 3))
    if metrics.last_status == "invisible":
        return msgspec.structs.replace(metrics, invisible_s=round(metrics.invisible_s + seconds, 3))
    return metrics


def span_days(reads: list[tuple[str, int, int]], now: datetime) -> tuple[int, int]:
    """The first and last day (numbers) that ``reads`` (:func:`projector.rollups.plan`, or
    every month) cover, the last no later than ``now``'s."""
    today = (now.date() - _EPOCH).days
    firsts, lasts = [], []
    for grain, first, last in reads:
        if grain == "d":
            firsts.append(first)
            lasts.append(last)
        else:
            firsts.append(_month_start(first))
            lasts.append(today if last >= rollups.month_of(today) else _month_start(last + 1) - 1)
    return max(0, min(firsts)), min(today, max(lasts))


def _month_start(month: int) -> int:
    """The first day of a month number (year * 12 + month - 1); the epoch's for any month
    before it (every month: ``("m", 0, …)``)."""
    if month < 1970 * 12:
        return 0
    return (date(month // 12, month % 12 + 1, 1) - _EPOCH).days


async def open_usage(store: Store, projection: str, agents: Mapping[str, AgentMetrics],
                     now: datetime, days: tuple[int, int]) -> dict[str, timeline.Usage]:
    """What the open online spells of ``agents`` up to ``now`` add to their time over the
    days ``days`` (first and last, both included), by agent."""
    lo, hi = days[0] * timeline.DAY_MS, (days[1] + 1) * timeline.DAY_MS
    spans: dict[str, tuple[int, int]] = {}
    for agent, metrics in agents.items():
        if metrics.last_status != "online" or metrics.measured_to is None:
            continue
        start = max(lo, timeline.ms(metrics.measured_to))
        end = min(hi, timeline.ms(now))
        if start < end:
            spans[agent] = (start, end)
    if not spans:
        return {}
    first = min(start for start, _ in spans.values()) // timeline.DAY_MS
    last = (max(end for _, end in spans.values()) - 1) // timeline.DAY_MS
    stored = {(agent, day): blob for _, day, agent, blob in await store.report_tallies(
        projection, rollups.TIMELINE, [("d", first, last)]) if agent in spans}
    out: dict[str, timeline.Usage] = {}
    for agent, (start, end) in spans.items():
        total = out[agent] = timeline.Usage(levels={})
        for day, a, b in timeline.cut(start, end):
            _, moved = timeline.add_day(stored.get((agent, day)), timeline.Day(
                used=timeline.Usage(levels={}), online={a: 1, b: -1}, chats={}))
            timeline.add_usage(total, moved)
    return out
