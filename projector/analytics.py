"""A chat's and an agent's analytics measures, computed from their fold states. Pure (no I/O).

The definitions live here, each with a version (:data:`DEFINITIONS`); docs/analytics.md
states them exactly, with the provider fields behind them. The inputs are fold state
(:class:`~projector.states.ChatFold`: ``initiated_at``, ``accepted_at``, the close, the
``posts`` map of message times and author roles, ``holders``, ``ignored``), each merged
order-independently and idempotently, so a measure depends only on the set of events —
never on the order Kafka or the provider delivered them in. An agent's come from
:class:`~projector.states.AgentFold`'s ``spells`` (its status changes, bounded:
:mod:`projector.spells`).

Changing a definition: bump its version and :data:`VERSION`, say so in docs/analytics.md,
and rebuild (``parley projections rebuild --accept-changes``: the stored views differ).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from contracts.state import AgentMetrics, ChatMetrics
from projector.spells import totals
from projector.states import AgentFold, ChatFold

__all__ = ["AGENT_DEFINITIONS", "AGENT_VERSION", "DEFINITIONS", "VERSION", "agent_metrics",
           "chat_metrics"]

#: Each measure's definition version (docs/analytics.md, "Definitions").
DEFINITIONS: dict[str, int] = {
    "wait_s": 1,
    "first_response_s": 1,
    "response_avg_s": 1,
    "response_max_s": 1,
    "handle_s": 1,
    "messages": 1,
    "missed": 1,
    "abandoned": 1,
    "transfers": 1,
}

#: The version of the set of definitions, served as ``metrics.version``: raised whenever
#: any one definition's version is.
VERSION = 1

#: Each agent measure's definition version (docs/analytics.md, "An agent's measures").
AGENT_DEFINITIONS: dict[str, int] = {
    "online_s": 2,
    "invisible_s": 2,
    "chats_handled": 2,
    "time": 1,
}

#: The version of the agent definitions, served as the agent's ``metrics.version``.
AGENT_VERSION = 3


# The messages that start and stop the clock, in the order they sort in at equal times: a
# visitor's message before a reply (Natterly sends whole seconds: a reply in the same second
# answers it, in 0 s).
_VISITOR, _AGENT = 0, 1
_ORDER = {"visitor": _VISITOR, "agent": _AGENT}


def chat_metrics(s: ChatFold, closed_at: datetime | None) -> ChatMetrics:
    """The measures of one chat; ``closed_at``: when it closed, None while it is open
    (a reopened chat is open until it closes again)."""
    excluded: list[str] = []
    accepted_at = s.accepted_at
    wait = _span(s.initiated_at, accepted_at, "wait_s", excluded)
    handle = _span(accepted_at, closed_at, "handle_s", excluded)
    counts = {"visitor": 0, "agent": 0, "bot": 0, "system": 0}
    responses: list[float] = []
    if s.posts:  # built for every chat row written: one pass, no copies where it can
        timeline: list[tuple[datetime, int]] = []
        for _, at, role in _shown(s):
            counts[role] = counts.get(role, 0) + 1
            order = _ORDER.get(role)
            if order is not None:  # bots and the system never stop the clock
                timeline.append((at, order))
        if timeline:
            responses = _responses(timeline)
    replied = counts["agent"] > 0
    missed = s.ignored and accepted_at is None and not replied
    return ChatMetrics(
        version=VERSION,
        wait_s=wait,
        first_response_s=responses[0] if responses else None,
        response_avg_s=sum(responses) / len(responses) if responses else None,
        response_max_s=max(responses) if responses else None,
        responses=len(responses),
        handle_s=handle,
        visitor_messages=counts["visitor"],
        agent_messages=counts["agent"],
        bot_messages=counts["bot"],
        system_messages=counts["system"],
        missed=missed,
        abandoned=closed_at is not None and accepted_at is None and not replied and not missed,
        transfers=max(0, len(s.holders) - 1),
        excluded=tuple(excluded) if excluded else (),
    )


def _shown(s: ChatFold) -> Iterable[tuple[int, datetime, str]]:
    """The messages that count (docs/analytics.md), each as the earliest (key, time, role)
    said of it — a minimum per message, so the same whatever order the set iterates in —
    leaving out agent-only notes and control messages, and deleted messages."""
    hidden = s.internal | s.deleted if s.deleted else s.internal
    first: dict[int, tuple[int, datetime, str]] = {}
    for post in s.posts:
        key = post[0]
        if key in hidden:
            continue
        prior = first.get(key)
        if prior is None or post < prior:
            first[key] = post
    return first.values()


def _span(start: datetime | None, end: datetime | None, name: str, excluded: list[str]
          ) -> float | None:
    """Seconds from ``start`` to ``end``; None if either is unknown, or if ``end`` is before
    ``start`` (an impossible interval: named in ``excluded``, never a negative duration)."""
    if start is None or end is None:
        return None
    if end < start:
        excluded.append(name)
        return None
    return (end - start).total_seconds()


def _responses(timeline: list[tuple[datetime, int]]) -> list[float]:
    """Each agent response time, in order: from the first visitor message not yet answered
    to the next agent message. Visitor messages in a row wait together (the clock runs from
    the first); agent messages with nothing to answer (a greeting, a follow-up) measure
    nothing."""
    out: list[float] = []
    waiting: datetime | None = None
    for at, who in sorted(timeline):
        if who == _VISITOR:
            if waiting is None:
                waiting = at
        elif waiting is not None:
            out.append((at - waiting).total_seconds())
            waiting = None
    return out


def agent_metrics(s: AgentFold) -> AgentMetrics:
    """The measures of one agent, over the span from its first to its latest status change
    (the time after the latest change is still open: ``last_status`` runs on from
    ``measured_to``). ``chats_handled`` is not on the agent's row (it would grow with its
    history): the query API counts it from the report roll-ups (:mod:`projector.rollups`)."""
    spells = s.spells
    if spells is None or not spells.pending:
        return AgentMetrics(version=AGENT_VERSION)
    held, count = totals(spells)
    pending = spells.pending
    return AgentMetrics(
        version=AGENT_VERSION,
        online_s=held["online"],
        invisible_s=held["invisible"],
        status_changes=count,
        measured_from=spells.first_at if spells.settled else pending[0][0],
        measured_to=pending[-1][0],
        last_status=pending[-1][1],  # type: ignore[arg-type]
    )
