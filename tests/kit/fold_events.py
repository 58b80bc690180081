"""Helpers of the fold and view tests: event factories, a fold
driver, and Hypothesis strategies that generate realistic conversations of both providers.

The strategies mimic what ``contracts.normalise`` emits: a Natterly chat webhook yields
its primary event, a ``ChatUpdated`` snapshot (``#chat``), a ``MessagePosted`` per message
and a ``VisitorSeen`` (``#visitor``), all at the webhook's whole-second ``timestamp``; a
ChatShipper message webhook yields ``MessagePosted`` plus the conversation's snapshot and
lifecycle facts (``#started``/``#accepted``/``#closed``) at millisecond times. Times move
forward in small steps, so ties — the hard case for conflict resolution — are common.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import msgspec
from hypothesis import strategies as st

from contracts import domain as d
from projector.fold import affected, apply
from projector.states import AggregateRef, FoldState, encode_state
from projector.views import row_for

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Common(TypedDict):
    """The fields every domain event has."""

    event_id: str
    occurred_at: datetime
    provider: str
    source: str


def common(
    when: float | datetime, event_id: str | None = None, provider: str = "natterly", source: str = "acme"
) -> Common:
    occurred_at = when if isinstance(when, datetime) else at(when)
    return Common(
        event_id=event_id or f"e{next(_ids):06d}", occurred_at=occurred_at, provider=provider, source=source
    )


def receipt(draw: st.DrawFn, events: list[d.DomainEvent], start: int) -> None:
    """Stamp ``events[start:]`` (one webhook's) with a receive time and a log offset.

    Receive times are drawn from a few milliseconds, so equal ones are common and the
    offset decides; offsets are distinct per webhook, as in a partition.
    """
    received = T0 + timedelta(milliseconds=draw(st.integers(0, 3)))
    offset = draw(st.integers(0, 10**6))
    events[start:] = [
        msgspec.structs.replace(event, received_at=received, log_offset=offset) for event in events[start:]
    ]


def fold(
    events: Iterable[d.DomainEvent], states: dict[AggregateRef, FoldState] | None = None
) -> dict[AggregateRef, FoldState]:
    """Fold events in the given order, the way the runner does (every affected aggregate)."""
    states = {} if states is None else states
    for event in events:
        for ref in affected(event):
            states[ref] = apply(ref, states.get(ref), event)
    return states


def encoded(states: dict[AggregateRef, FoldState]) -> dict[AggregateRef, bytes]:
    return {ref: encode_state(state) for ref, state in states.items()}


def viewed(states: dict[AggregateRef, FoldState]) -> dict[AggregateRef, bytes]:
    return {ref: row_for(ref, state).view for ref, state in states.items()}


# ----------------------------------------------------------------------------- strategies

VISITORS = ("v1", "v2", "v3")
SESSIONS = ("session:s1", "session:s2")
AGENTS = ("a1", "a2", "a3")
MESSAGES = ("m1", "m2", "m3", "m4")
NATTERLY_KINDS = (
    "ChatInitiated",
    "ChatAccepted",
    "ChatAssigned",
    "ChatUnassigned",
    "ChatIdle",
    "ChatIgnored",
    "ChatCompleted",
    "ChatClosed",
    "ChatRated",
    "ChatTranscriptSent",
)
CHATSHIPPER_KINDS = (
    "conversation.create",
    "conversation.update",
    "message.create",
    "message.update",
    "message.delete",
)
CS_STATUSES = ("queued", "active", "closed")
RATINGS: tuple[d.Rating, ...] = (1, 5, "good", True)
PAGES = tuple(
    d.PageView(url=f"https://shop.example/{n % 3}", title=f"Page {n % 2}", at=at(n)) for n in range(4)
)


@st.composite
def natterly_conversation(draw: st.DrawFn, chat_id: str) -> list[d.DomainEvent]:
    """The domain events of one Natterly chat's webhooks (whole-second times, many ties)."""
    events: list[d.DomainEvent] = []
    visitor = draw(st.sampled_from(VISITORS))
    # Known by a session only until a webhook names the visitor's uuid beside it.
    session = draw(st.sampled_from((None, *SESSIONS)))
    seconds = draw(st.integers(0, 50))
    for n in range(draw(st.integers(1, 10))):
        seconds += draw(st.sampled_from((0, 0, 0, 1, 1, 2, 30)))
        kind = draw(st.sampled_from(NATTERLY_KINDS))
        base = f"n-{chat_id}-{n}"
        start = len(events)
        c = common(seconds, base)
        agent = draw(st.sampled_from(AGENTS))
        agent_ref = d.AgentRef(id=agent, name=draw(st.sampled_from((None, f"Agent {agent}", "Renamed"))))
        identified = session is None or draw(st.booleans())
        named = visitor if identified else session
        assert named is not None
        match kind:
            case "ChatInitiated":
                events.append(d.ChatStarted(**c, chat_id=chat_id, initiated_at=at(seconds)))
            case "ChatAccepted":
                events.append(
                    d.ChatAccepted(**c, chat_id=chat_id, agent=draw(st.sampled_from((agent_ref, None))))
                )
            case "ChatAssigned":
                events.append(d.ChatAssigned(**c, chat_id=chat_id, agent=agent_ref))
            case "ChatUnassigned":
                events.append(d.ChatAssigned(**c, chat_id=chat_id, agent=None))
            case "ChatIdle":
                events.append(d.ChatIdle(**c, chat_id=chat_id))
            case "ChatIgnored":
                events.append(d.ChatIgnored(**c, chat_id=chat_id))
            case "ChatCompleted":
                events.append(d.ChatCompleted(**c, chat_id=chat_id))
            case "ChatClosed":
                events.append(d.ChatClosed(**c, chat_id=chat_id, closed_at=at(seconds)))
            case "ChatRated":
                events.append(d.ChatRated(**c, chat_id=chat_id, rating=draw(st.sampled_from(RATINGS))))
            case _:
                events.append(d.TranscriptSent(**c, chat_id=chat_id))
        events.append(
            d.ChatUpdated(
                **common(seconds, base + "#chat"),
                chat_id=chat_id,
                subject=draw(st.sampled_from((None, "Help", "Refund"))),
                department=draw(st.sampled_from((None, d.DepartmentRef(id="dep-1", name="Sales")))),
                site=d.SiteRef(id="site-1", name="Shop"),
                visitor=d.VisitorRef(id=named, name=draw(st.sampled_from((None, "Ann"))), anonymous=False),
                location=draw(
                    st.sampled_from((None, d.Location(country="United Kingdom", country_code="GB")))
                ),
                browser=draw(st.sampled_from((None, "Firefox", "Chrome"))),
                platform="Linux",
                initiated_at=at(draw(st.integers(0, 50))),
                last_message_at=draw(st.sampled_from((None, at(seconds)))),
                provider_status=draw(st.sampled_from((kind.removeprefix("Chat"), "Active", "Idle", None))),
                agent=draw(st.sampled_from((None, agent_ref))),
                closed_at=draw(st.sampled_from((None, at(seconds - 1)))),
                rating=draw(st.sampled_from((None, *RATINGS))),
            )
        )
        for message_id in draw(st.lists(st.sampled_from(MESSAGES), max_size=2, unique=True)):
            posted = seconds - draw(st.integers(0, 3))
            events.append(
                d.MessagePosted(
                    **common(seconds, f"{base}#msg:{message_id}"),
                    chat_id=chat_id,
                    message_id=message_id,
                    text=f"text of {message_id}",
                    author=d.Author(role=draw(st.sampled_from(("visitor", "agent", "bot", "system")))),
                    posted_at=at(posted),
                    internal=draw(st.booleans()),
                )
            )
        events.append(
            d.VisitorSeen(
                **common(seconds, base + "#visitor"),
                visitor_id=named,
                name=draw(st.sampled_from((None, "Ann", "Anonymous Chicken"))),
                chat_id=chat_id,
                alias=session if identified else None,
            )
        )
        receipt(draw, events, start)
    return events


@st.composite
def chatshipper_conversation(draw: st.DrawFn, chat_id: str) -> list[d.DomainEvent]:
    """The domain events of one ChatShipper conversation's webhooks (millisecond times)."""
    events: list[d.DomainEvent] = []
    visitor = draw(st.sampled_from(VISITORS))
    millis = draw(st.integers(0, 50_000))
    cs = {"provider": "chatshipper", "source": "shop"}
    for n in range(draw(st.integers(1, 10))):
        millis += draw(st.sampled_from((0, 0, 1, 5, 1000, 60_000)))
        when = at(millis / 1000)
        kind = draw(st.sampled_from(CHATSHIPPER_KINDS))
        base = f"cs-{chat_id}-{n:04d}"
        start = len(events)
        message_id = draw(st.sampled_from(MESSAGES))
        if kind == "message.update":
            events.append(
                d.MessageEdited(
                    **common(when, base, **cs),
                    chat_id=chat_id,
                    message_id=message_id,
                    text=draw(st.sampled_from(("edited", "edited again", None))),
                    edited_at=when,
                    internal=draw(st.booleans()),
                )
            )
            receipt(draw, events, start)
            continue
        if kind == "message.delete":
            events.append(
                d.MessageDeleted(
                    **common(when, base, **cs), chat_id=chat_id, message_id=message_id, deleted_at=when
                )
            )
            receipt(draw, events, start)
            continue
        suffix = ""
        if kind == "message.create":
            events.append(
                d.MessagePosted(
                    **common(when, base, **cs),
                    chat_id=chat_id,
                    message_id=message_id,
                    text=f"hello {message_id}",
                    author=draw(st.sampled_from((
                        d.Author(role="visitor", name="Jenny"),
                        # An agent named by id only, or populated with a name.
                        d.Author(role="agent", id=draw(st.sampled_from(AGENTS))),
                        d.Author(role="agent", id=draw(st.sampled_from(AGENTS)), name="Populated"),
                    ))),
                    posted_at=when,
                    message_type="chat",
                    internal=draw(st.booleans()),
                )
            )
            suffix = "#chat"
        elif kind == "conversation.create":
            events.append(d.ChatStarted(**common(when, base, **cs), chat_id=chat_id, initiated_at=when))
            suffix = "#chat"
        status = draw(st.sampled_from(CS_STATUSES))
        events.append(
            d.ChatUpdated(
                **common(when, base + suffix, **cs),
                chat_id=chat_id,
                subject=draw(st.sampled_from(("Jenny Jones", "Jenny"))),
                site=d.SiteRef(id="org-1"),
                visitor=d.VisitorRef(id=visitor, name="Jenny"),
                initiated_at=at(millis / 1000),
                provider_status=status,
                chat_type=draw(st.sampled_from(("contact", "bot"))),
                # Participants whose user the API populated, named.
                agents=tuple(d.AgentRef(id=a, name=f"Participant {a}")
                             for a in draw(st.lists(st.sampled_from(AGENTS), max_size=2, unique=True))),
            )
        )
        if status == "queued" and kind != "conversation.create":
            events.append(d.ChatStarted(**common(when, base + "#started", **cs), chat_id=chat_id))
        agent = draw(st.sampled_from((None, *AGENTS)))
        if status == "active" or agent is not None:
            agent_ref = d.AgentRef(id=agent) if agent is not None else None
            events.append(
                d.ChatAccepted(**common(when, base + "#accepted", **cs), chat_id=chat_id, agent=agent_ref)
            )
        if status == "closed":
            events.append(
                d.ChatClosed(**common(when, base + "#closed", **cs), chat_id=chat_id, closed_at=when)
            )
        events.append(
            d.VisitorSeen(
                **common(when, base + "#visitor", **cs),
                visitor_id=visitor,
                name="Jenny",
                email=draw(st.sampled_from((None, "jenny@example.com"))),
                chat_id=chat_id,
            )
        )
        receipt(draw, events, start)
    return events


@st.composite
def agent_and_visitor_events(draw: st.DrawFn) -> list[d.DomainEvent]:
    """Agents' status changes and visitors registering sessions, outside any chat."""
    events: list[d.DomainEvent] = []
    for n in range(draw(st.integers(0, 8))):
        seconds = draw(st.integers(0, 60))
        if draw(st.booleans()):
            agent = draw(st.sampled_from(AGENTS))
            events.append(
                d.AgentStatusChanged(
                    **common(seconds, f"u-{n}"),
                    agent_id=agent,
                    name=draw(st.sampled_from((None, f"Agent {agent}", "Renamed"))),
                    status=draw(st.sampled_from(("online", "offline", "invisible"))),
                )
            )
        else:
            events.append(
                d.VisitorSeen(
                    **common(seconds, f"s-{n}"),
                    visitor_id=draw(st.sampled_from(VISITORS)),
                    name=draw(st.sampled_from((None, "Ann"))),
                    email=draw(st.sampled_from((None, "ann@example.com"))),
                    anonymous=draw(st.sampled_from((None, True, False))),
                    page=draw(st.sampled_from((None, *PAGES))),
                )
            )
        receipt(draw, events, len(events) - 1)
    return events


@st.composite
def conversation(draw: st.DrawFn, chat_id: str = "c1") -> list[d.DomainEvent]:
    if draw(st.booleans()):
        return draw(natterly_conversation(chat_id))
    return draw(chatshipper_conversation(chat_id))


@st.composite
def world(draw: st.DrawFn) -> list[d.DomainEvent]:
    """Several chats of both providers sharing visitors and agents, plus agent/visitor events."""
    events: list[d.DomainEvent] = []
    for n in range(draw(st.integers(1, 4))):
        events += draw(conversation(f"c{n}"))
    events += draw(agent_and_visitor_events())
    return events


@st.composite
def redelivered(draw: st.DrawFn, events: Sequence[d.DomainEvent]) -> list[d.DomainEvent]:
    """``events`` as Kafka may hand them over: any order, any of them more than once."""
    copies = list(events) + draw(st.lists(st.sampled_from(events), max_size=len(events))) if events else []
    return draw(st.permutations(copies))
