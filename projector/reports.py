"""The reports API's answers (``GET /api/reports/chats``, ``/agents``, ``/live``), read from the
roll-ups the stores keep (:mod:`projector.rollups`), never by scanning chats. The query API
(:mod:`projector.api`) routes to these; docs/analytics.md and docs/http-api.md describe them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from contracts.state import AgentMetrics, AgentState, AgentTime
from projector import analytics, open_spells, rollups, timeline
from projector.store import Store

__all__ = [
    "GROUPS",
    "MAX_DAYS",
    "BadQuery",
    "agent_times",
    "agents_report",
    "chats_handled",
    "chats_report",
    "live_report",
    "parse_range",
    "served_metrics",
]

#: ``group_by`` values and the roll-up dimension each reads.
GROUPS: dict[str, str] = {"agent": "agent", "department": "department", "site": "site",
                          "source": "source", "day": "all", "hour": "hour"}
#: The longest range a report covers (ten years).
MAX_DAYS = 3660
#: The range when ``from`` is not given: the 30 days ending with ``to``.
DEFAULT_DAYS = 30

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Every month tally: an agent's whole history.
_ALL_MONTHS = [("m", 0, 10**6)]
_NO_TIME = AgentTime()
_EPOCH = date(1970, 1, 1)
_AGENT = msgspec.json.Decoder(AgentState)
_JSON = msgspec.json.Encoder()


class MeasureSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One measure over a report group's chats: how many have it, its mean, and its median
    and p90 (nearest rank, within ``relative_error`` of the exact value); seconds."""

    count: int
    mean: float | None
    median: float | None
    p90: float | None


class ChatsSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The chats of one report group: how many, how many were missed, abandoned, had an
    impossible interval (``excluded``) or a rating; transfers and messages summed; and each
    duration measure summarised (docs/analytics.md)."""

    chats: int = 0
    missed: int = 0
    abandoned: int = 0
    excluded: int = 0
    rated: int = 0
    transfers: int = 0
    visitor_messages: int = 0
    agent_messages: int = 0
    bot_messages: int = 0
    system_messages: int = 0
    measures: dict[str, MeasureSummary] = {}


class ReportGroup(ChatsSummary, frozen=True, kw_only=True):
    """A group: ``key`` is the agent id, department, site, source, day (YYYY-MM-DD) or hour
    of the day (00-23, UTC) it groups by, or ``all``."""

    key: str


class ChatsReport(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/reports/chats``: the chats that started from ``from`` to ``to`` (UTC
    days, both included). ``version``: the roll-ups'; ``metrics_version``: the chat
    measures' definitions'."""

    from_: str = msgspec.field(name="from")
    to: str
    version: int
    metrics_version: int
    relative_error: float
    group_by: str | None
    groups: list[ReportGroup]


class AgentReport(ChatsSummary, frozen=True, kw_only=True):
    """An agent: the chats it held that started in the range, its time in the range (online,
    occupancy, concurrency: docs/analytics.md), and its own measures (over its whole
    history)."""

    id: str
    name: str | None = None
    status: str | None = None
    time: AgentTime = AgentTime()
    metrics: AgentMetrics | None = None


class AgentsReport(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/reports/agents``."""

    from_: str = msgspec.field(name="from")
    to: str
    version: int
    metrics_version: int
    relative_error: float
    items: list[AgentReport]


class LiveAgent(msgspec.Struct, frozen=True, kw_only=True):
    """An agent online now or with open chats; ``active_chats``: its active or idle chats."""

    id: str
    name: str | None
    status: str | None
    active_chats: int


class LiveReport(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/reports/live``: at ``at``, how many chats wait, the longest current wait
    (seconds since the earliest waiting chat's initiation), and the agents."""

    at: datetime
    waiting: int
    longest_wait_s: float | None
    agents: list[LiveAgent]



class _Counts(msgspec.Struct, array_like=True):
    """A tally's first field only (:class:`projector.rollups.Tally` is array-like; the
    rest is ignored)."""

    counts: dict[str, int] = {}


_COUNTS = msgspec.msgpack.Decoder(_Counts)


class BadQuery(ValueError):
    """A report query's parameter is wrong; the message names it (a 400)."""


def _day(name: str, raw: str) -> date:
    if not _DATE.fullmatch(raw):
        raise BadQuery(f"{name} must be a date as YYYY-MM-DD, not {raw[:40]!r}")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"{name} is not a calendar date: {raw!r}") from None
    if day == date.max:
        # The roll-up plan and the hours of a day look one day past `to`.
        raise BadQuery(f"{name} must be a day before {date.max}")
    return day


def parse_range(raw_from: str | None, raw_to: str | None, today: date) -> tuple[date, date]:
    """The query's ``from`` and ``to`` (UTC days, both included); ``to`` defaults to
    ``today`` and ``from`` to 30 days ending with ``to``; :class:`BadQuery` names a bad one."""
    end = _day("to", raw_to) if raw_to else today
    start = _day("from", raw_from) if raw_from else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadQuery(f"from ({start}) is after to ({end})")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadQuery(f"from..to spans more than {MAX_DAYS} days")
    return start, end


def _num(d: date) -> int:
    return (d - _EPOCH).days


def _group_key(group_by: str | None, period: int, value: str) -> str:
    if group_by == "day":
        return (_EPOCH + timedelta(days=period)).isoformat()
    if group_by is None:
        return "all"
    return value


async def _groups(store: Store, projection: str, dim: str, start: date, end: date,
                  group_by: str | None) -> dict[str, dict[str, Any]]:
    reads = ([("d", _num(start), _num(end))] if group_by == "day"
             else rollups.plan(_num(start), _num(end)))
    found: dict[str, list[bytes]] = defaultdict(list)
    for _, period, value, tally in await store.report_tallies(projection, dim, reads):
        found[_group_key(group_by, period, value)].append(tally)
    return {key: rollups.summary(found[key]) for key in sorted(found)}


def _head(start: date, end: date) -> dict[str, Any]:
    return {"from_": start.isoformat(), "to": end.isoformat(), "version": rollups.ROLLUP_VERSION,
            "metrics_version": analytics.VERSION,
            "relative_error": round(rollups.RELATIVE_ERROR, 4)}


async def chats_report(store: Store, projection: str, days: tuple[date, date],
                       group_by: str | None) -> bytes:
    """``GET /api/reports/chats``: counts, and count, mean, median and p90 of each measure,
    over the chats that started in the range, in one group or grouped by ``group_by``."""
    if group_by is not None and group_by not in GROUPS:
        raise BadQuery(f"group_by must be one of {', '.join(GROUPS)}, not {group_by[:40]!r}")
    start, end = days
    dim = "all" if group_by is None else GROUPS[group_by]
    groups = await _groups(store, projection, dim, start, end, group_by)
    return _JSON.encode(ChatsReport(**_head(start, end), group_by=group_by, groups=[
        msgspec.convert({"key": key, **summary}, ReportGroup) for key, summary in groups.items()]))


async def agents_report(store: Store, projection: str, days: tuple[date, date],
                        now: datetime | None = None) -> bytes:
    """``GET /api/reports/agents``: every agent with the chats it held that started in the
    range (as ``GET /api/reports/chats?group_by=agent``), its name and status, and its
    measures (docs/analytics.md, "An agent's measures": over its whole history); with
    ``now``, open spells counted up to it (:mod:`projector.open_spells`)."""
    start, end = days
    groups = await _groups(store, projection, "agent", start, end, "agent")
    agents = {a.id: a for a in map(_AGENT.decode, await store.list_agents(projection))}
    spells = {a.id: a.metrics for a in agents.values() if a.metrics is not None}
    times = await agent_times(store, projection, rollups.plan(_num(start), _num(end)),
                              now=now, agents=spells)
    # Measures over the whole history, as GET /api/agents serves them.
    served = await served_metrics(store, projection, list(agents.values()), now)
    items = []
    for agent_id in sorted(set(agents) | set(groups) | set(times)):
        agent = agents.get(agent_id)
        chats = groups.get(agent_id) or rollups.summary([])
        items.append(AgentReport(
            id=agent_id, name=None if agent is None else agent.name,
            status=None if agent is None else agent.status, metrics=served.get(agent_id),
            time=times.get(agent_id, _NO_TIME),
            **msgspec.structs.asdict(msgspec.convert(chats, ChatsSummary))))
    return _JSON.encode(AgentsReport(**_head(start, end), items=items))


async def live_report(store: Store, projection: str, now: datetime) -> bytes:
    """``GET /api/reports/live``: the chats waiting now and the longest current wait, and
    the agents online or with open chats, with how many active (or idle) chats each has."""
    waiting, since, open_chats = await store.report_live(projection)
    agents = {a.id: a for a in map(_AGENT.decode, await store.list_agents(projection))}
    longest = None
    if since is not None:
        longest = max(0.0, (now - datetime.fromtimestamp(since / 1e6, UTC)).total_seconds())
    shown = sorted({a for a, v in agents.items() if v.status == "online"} | set(open_chats))
    return _JSON.encode(LiveReport(
        at=now, waiting=waiting, longest_wait_s=None if longest is None else round(longest, 3),
        agents=[LiveAgent(id=a, name=None if a not in agents else agents[a].name,
                          status=None if a not in agents else agents[a].status,
                          active_chats=open_chats.get(a, 0)) for a in shown]))


async def chats_handled(store: Store, projection: str) -> dict[str, int]:
    """Every agent's chats handled (docs/analytics.md): the chats of its ``agent`` roll-up,
    over all time (the month tallies; only their counts decoded)."""
    counts: dict[str, int] = defaultdict(int)
    for _, _, value, tally in await store.report_tallies(projection, "agent", _ALL_MONTHS):
        counts[value] += _COUNTS.decode(tally).counts.get("chats", 0)
    return dict(counts)


async def agent_times(store: Store, projection: str, reads: list[tuple[str, int, int]], *,
                      now: datetime | None = None,
                      agents: Mapping[str, AgentMetrics] | None = None) -> dict[str, AgentTime]:
    """Every agent's time (docs/analytics.md, "Occupancy and concurrency") over the days
    ``reads`` covers (:func:`projector.rollups.plan`): its months' usage and its days'; with
    ``now``, the open spells of ``agents`` counted up to it (:mod:`projector.open_spells`)."""
    totals: dict[str, timeline.Usage] = {}
    for grain, _, agent, blob in await store.report_tallies(projection, rollups.TIMELINE, reads):
        used = timeline.day_usage(blob) if grain == "d" else timeline.decode_usage(blob)
        timeline.add_usage(totals.setdefault(agent, timeline.Usage(levels={})), used)
    if now is not None and agents:
        days = open_spells.span_days(reads, now)
        for agent, more in (await open_spells.open_usage(store, projection, agents, now, days)).items():
            timeline.add_usage(totals.setdefault(agent, timeline.Usage(levels={})), more)
    return {agent: AgentTime(**timeline.summary(u)) for agent, u in sorted(totals.items())}


async def served_metrics(store: Store, projection: str, agents: Sequence[AgentState],
                         now: datetime | None) -> dict[str, AgentMetrics]:
    """The measures of ``agents`` (those that have some) as the query API serves them: over
    their whole history, with their chats handled and time from the roll-ups and, with
    ``now``, their open spells counted up to it (:func:`with_totals`). One read of the
    roll-ups for all of them."""
    spells = {a.id: a.metrics for a in agents if a.metrics is not None}
    if not spells:
        return {}
    handled = await chats_handled(store, projection)
    whole = await agent_times(store, projection, _ALL_MONTHS, now=now, agents=spells)
    return {agent_id: with_totals(metrics, agent_id, handled, whole, now)
            for agent_id, metrics in spells.items()}


def with_totals(metrics: AgentMetrics, agent_id: str, handled: dict[str, int],
                whole: dict[str, AgentTime], now: datetime | None = None) -> AgentMetrics:
    """An agent's measures with what the query API counts from the roll-ups over its whole
    history: its chats handled and its time; with ``now``, its open spell counted up to it
    in ``online_s`` or ``invisible_s`` (``whole`` counted it in the time)."""
    if now is not None:
        metrics = open_spells.counted(metrics, now)
    return msgspec.structs.replace(metrics, chats_handled=handled.get(agent_id, 0),
                                   time=whole.get(agent_id, _NO_TIME))
