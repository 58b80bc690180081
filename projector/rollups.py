"""The report roll-ups: a chat's contribution (:class:`Fact`), the summable tallies the
stores keep per (grain, dimension, value, period), and the reports read from them. Pure (no
I/O); the stores apply :func:`changes` in the same transaction as the rows they commit.

Every chat row carries its fact (built from its view, so from its fold state alone). A store
keeps each chat's last fact; committing a chat whose fact differs removes the old fact's
contribution from the tallies and adds the new one's. So the tallies are always the sum of
the facts of the chats stored: the same whatever order or how many times events arrive
(a redelivered event gives the same state, the same fact, and no change), and right when a
chat's measures change (a late reply, a reopened chat, a rating after the close).

Tallies are exact integers (durations in milliseconds), so removing and adding never
drifts. Medians and p90 come from fixed log-scale histograms, mergeable by adding counts:
bucket 0 holds durations under 1 ms, bucket k >= 1 those in [G^(k-1), G^k) ms with G = 1.1;
a quantile is reported as its bucket's geometric middle, within :data:`RELATIVE_ERROR`
(4.9%) of the exact nearest-rank quantile.

Customers' chats only (ChatShipper ``type`` ``contact``, or no type: every Natterly chat), as
``GET /api/chats`` lists by default. A chat is counted on the UTC day (and hour) it started:
its initiation, else its acceptance, else its close, else its last message (a chat with none
of them is not counted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, timedelta
from typing import Any

import msgspec

from contracts.state import ChatState
from projector import timeline
from projector.spells import Moved

__all__ = ["COUNTS", "DIMENSIONS", "GAMMA", "MEASURES", "RELATIVE_ERROR", "ROLLUP_VERSION",
           "TIMELINE", "Delta", "Fact", "Key", "Tally", "add", "bucket", "changes", "fact_for",
           "join_moves", "merge", "month_of", "moves_for", "plan", "quantile", "summary"]

#: Raised when what a fact holds or how it is tallied changes (rebuild to apply). 2: a
#: fact holds the chat's handle interval, and the agents' days (:mod:`projector.timeline`)
#: are kept.
ROLLUP_VERSION = 2

#: The dimension of the agents' day and month usage (:mod:`projector.timeline`).
TIMELINE = "timeline"

#: The measures summarised by count, mean, median and p90 (docs/analytics.md).
MEASURES = ("wait_s", "first_response_s", "response_avg_s", "response_max_s", "handle_s")
#: The measures reported as totals: how many chats, and sums over them.
COUNTS = ("chats", "missed", "abandoned", "excluded", "rated", "transfers",
          "visitor_messages", "agent_messages", "bot_messages", "system_messages")
#: What a report groups by; ``all`` is no grouping, ``day`` reads ``all`` by day.
DIMENSIONS = ("all", "agent", "department", "site", "source", "hour")

GAMMA = 1.1
#: The largest relative error of a reported median or p90 (durations of 1 ms or more).
RELATIVE_ERROR = math.sqrt(GAMMA) - 1
_LOG_GAMMA = math.log(GAMMA)
_EPOCH = date(1970, 1, 1)

#: A tally's key: (grain "d" or "m", dimension, value, period: day or month number).
Key = tuple[str, str, str, int]


class Fact(msgspec.Struct, frozen=True, array_like=True):
    """A chat's contribution to the roll-ups."""

    day: int  # UTC days since 1970-01-01
    groups: tuple[tuple[str, str], ...]  # (dimension, value), "all" and "hour" included
    values: tuple[int | None, ...]  # milliseconds, in MEASURES' order
    counts: tuple[int, ...]  # in COUNTS' order
    #: From the acceptance to the close (ms since the epoch), while closed with a
    #: ``handle_s``: the time each holder had it active (:mod:`projector.timeline`).
    span: tuple[int, int] | None = None


class Tally(msgspec.Struct, array_like=True, omit_defaults=True):
    """Sums over the facts of one (grain, dimension, value, period)."""

    counts: dict[str, int] = {}
    n: dict[str, int] = {}
    ms: dict[str, int] = {}
    hist: dict[str, dict[int, int]] = {}


#: A move of one tally: a chat tally's, an agent's day's or an agent's month's.
Delta = Tally | timeline.Day | timeline.Usage

_FACT = msgspec.msgpack.Decoder(Fact)
_MOVES = msgspec.msgpack.Decoder(list[tuple[int, int, int]])
_TALLY = msgspec.msgpack.Decoder(Tally)
_ENC = msgspec.msgpack.Encoder()


def bucket(ms: int) -> int:
    """The histogram bucket of a duration in milliseconds."""
    return 0 if ms < 1 else int(math.log(ms) / _LOG_GAMMA) + 1


def _middle(k: int) -> float:
    """A bucket's representative value, in seconds."""
    return 0.0 if k == 0 else GAMMA ** (k - 0.5) / 1000


def month_of(day: int) -> int:
    """The month number (year * 12 + month - 1) of a day number."""
    d = _EPOCH + timedelta(days=day)
    return d.year * 12 + d.month - 1


def fact_for(view: ChatState, holders: Iterable[str]) -> bytes:
    """The encoded fact of a chat (empty when it has no start time or no measures)."""
    m = view.metrics
    if view.type not in (None, "contact"):  # a bot's, agents' or system conversation
        return b""
    start = view.initiated_at or view.accepted_at or view.closed_at or view.last_message_at
    if m is None or start is None:
        return b""
    start = start.astimezone(UTC)
    groups: list[tuple[str, str]] = [("all", ""), ("hour", f"{start.hour:02d}")]
    groups += [("agent", agent) for agent in sorted(set(holders))]
    for dim, ref in (("department", view.department), ("site", view.site)):
        value = None if ref is None else ref.id or ref.name
        if value is not None:
            groups.append((dim, value))
    if view.source is not None:
        groups.append(("source", view.source))
    values = tuple(None if v is None else round(v * 1000) for v in
                   (m.wait_s, m.first_response_s, m.response_avg_s, m.response_max_s, m.handle_s))
    counts = (1, int(m.missed), int(m.abandoned), int(bool(m.excluded)),
              int(view.rating is not None), m.transfers, m.visitor_messages, m.agent_messages,
              m.bot_messages, m.system_messages)
    span = None
    if m.handle_s is not None and view.accepted_at is not None and view.closed_at is not None:
        span = (timeline.ms(view.accepted_at), timeline.ms(view.closed_at))
    return _ENC.encode(Fact(day=(start.date() - _EPOCH).days, groups=tuple(groups),
                            values=values, counts=counts, span=span))


def moves_for(moved: Sequence[Moved]) -> bytes:
    """An agent row's fact: how its online time moved in the batch
    (:func:`projector.spells.walk`), in ms since the epoch (empty when it did not)."""
    if not moved:
        return b""
    return _ENC.encode([(timeline.ms(start), timeline.ms(end), sign)
                        for start, end, sign in moved])


def join_moves(first: bytes, then: bytes) -> bytes:
    """Two batches' moves of one agent's online time as one (:func:`moves_for`)."""
    if not first or not then:
        return first or then
    return _ENC.encode(_MOVES.decode(first) + _MOVES.decode(then))


def _shift(out: dict[Key, Delta], agent: str, start: int, end: int, sign: int,
           online: bool) -> None:
    """Move an agent's days over [start, end) (ms since the epoch) by ``sign``."""
    for day, lo, hi in timeline.cut(start, end):
        key = ("d", TIMELINE, agent, day)
        d = out.get(key)
        if d is None:
            d = out[key] = timeline.Day(used=timeline.Usage(levels={}), online={}, chats={})
            month = ("m", TIMELINE, agent, month_of(day))
            out.setdefault(month, timeline.Usage(levels={}))  # moved with its days
        assert isinstance(d, timeline.Day)
        timeline.shift(d.online if online else d.chats, lo, hi, sign)


def _contribute(out: dict[Key, Delta], fact: Fact, sign: int) -> None:
    month = month_of(fact.day)
    span = fact.span
    # The same for every tally the fact moves: worked out once.
    counts = [(name, sign * c) for name, c in zip(COUNTS, fact.counts, strict=True) if c]
    values = [(name, sign * v, bucket(v)) for name, v in zip(MEASURES, fact.values, strict=True)
              if v is not None]
    for dim, value in fact.groups:
        if span is not None and dim == "agent":
            _shift(out, value, span[0], span[1], sign, online=False)
        for key in (("d", dim, value, fact.day), ("m", dim, value, month)):
            t = out.get(key)
            if t is None:
                t = out[key] = Tally(counts={}, n={}, ms={}, hist={})
            assert isinstance(t, Tally)
            tc, tn, tms, hist = t.counts, t.n, t.ms, t.hist
            for name, c in counts:
                tc[name] = tc.get(name, 0) + c
            for name, v, k in values:
                tn[name] = tn.get(name, 0) + sign
                tms[name] = tms.get(name, 0) + v
                h = hist.setdefault(name, {})
                h[k] = h.get(k, 0) + sign


def changes(old: Mapping[str, bytes], new: Sequence[tuple[str, bytes]],
            moves: Sequence[tuple[str, bytes]] = ()) -> tuple[dict[str, bytes], dict[Key, Delta]]:
    """From each chat's stored fact (``old``, by chat id), the facts being committed
    (``new``, in batch order: a later one of a chat wins) and the agents' moves of online
    time (``moves``: (agent id, :func:`moves_for`), every one counts): the facts to store
    and the tally deltas (old contributions removed, new added; none for an unchanged
    fact)."""
    latest = dict(new)
    deltas: dict[Key, Delta] = {}
    for agent, moved in moves:
        if moved:
            for start, end, sign in _MOVES.decode(moved):
                _shift(deltas, agent, start, end, sign, online=True)
    write: dict[str, bytes] = {}
    for chat_id, fact in latest.items():
        before = old.get(chat_id, b"")
        if fact == before:
            continue
        write[chat_id] = fact
        if before:
            _contribute(deltas, _FACT.decode(before), -1)
        if fact:
            _contribute(deltas, _FACT.decode(fact), 1)
    return write, _pruned(deltas)


def _pruned(deltas: dict[Key, Delta]) -> dict[Key, Delta]:
    """``deltas`` without the agents' days that did not move (a chat whose fact changed but
    not its interval nor its holders removes and adds the same span: nothing to write), nor
    the months of only such days."""
    still: set[tuple[str, int]] = set()
    idle: list[Key] = []
    for key, delta in deltas.items():
        if isinstance(delta, timeline.Day):
            if any(delta.online.values()) or any(delta.chats.values()):
                still.add((key[2], month_of(key[3])))
            else:
                idle.append(key)
    if not idle:
        return deltas
    for key in idle:
        del deltas[key]
        month = ("m", TIMELINE, key[2], month_of(key[3]))
        if (key[2], month[3]) not in still:
            deltas.pop(month, None)
    return deltas


def add(stored: bytes | None, delta: Tally) -> bytes:
    """A stored tally with ``delta`` added (zeros dropped, so equal sums encode equally;
    empty bytes once nothing is left)."""
    t = _TALLY.decode(stored) if stored else Tally(counts={}, n={}, ms={}, hist={})
    for mine, theirs in ((t.counts, delta.counts), (t.n, delta.n), (t.ms, delta.ms)):
        timeline.add_into(mine, theirs)
    for name, h in delta.hist.items():
        into = t.hist.setdefault(name, {})
        timeline.add_into(into, h)
        if not into:
            del t.hist[name]
    if not (t.counts or t.n or t.ms or t.hist):
        return b""  # every chat it held moved away: read as no tally at all
    return _ENC.encode(Tally(counts=_sorted(t.counts), n=_sorted(t.n), ms=_sorted(t.ms),
                             hist={k: _sorted(v) for k, v in sorted(t.hist.items())}))


def merge(current: Mapping[Key, bytes | None], deltas: Mapping[Key, Delta]) -> dict[Key, bytes]:
    """Every tally of ``deltas`` as it is to be stored: ``current`` (as stored, if at all)
    moved by its delta. An agent's month moves by how its days' usage moved, so its key is
    in ``deltas`` whenever one of its days' is (:func:`changes` puts it there)."""
    out: dict[Key, bytes] = {}
    months: dict[Key, timeline.Usage] = {}
    for key, delta in deltas.items():
        if isinstance(delta, Tally):
            out[key] = add(current.get(key), delta)
        elif isinstance(delta, timeline.Day):
            out[key], moved = timeline.add_day(current.get(key), delta)
            month = ("m", TIMELINE, key[2], month_of(key[3]))
            timeline.add_usage(months.setdefault(month, timeline.Usage(levels={})), moved)
    for key, delta in deltas.items():
        if isinstance(delta, timeline.Usage):
            total = timeline.decode_usage(current.get(key))
            timeline.add_usage(total, delta)
            timeline.add_usage(total, months.get(key, timeline.Usage(levels={})))
            out[key] = timeline.encode_usage(total)
    return out


def _sorted(d: dict[Any, int]) -> dict[Any, int]:
    return dict(sorted(d.items()))


def plan(start: int, end: int) -> list[tuple[str, int, int]]:
    """The (grain, first period, last period) reads that cover the days ``start``..``end``
    (inclusive): whole months from the month tallies, the days at either edge from the day
    tallies."""
    first = _EPOCH + timedelta(days=start)
    last = _EPOCH + timedelta(days=end)
    # The first whole month: the one starting on or after ``first``.
    m0 = first.year * 12 + first.month - 1 + (0 if first.day == 1 else 1)
    # The last whole month: the one ending on or before ``last``.
    m1 = last.year * 12 + last.month - 1 - (0 if (last + timedelta(days=1)).day == 1 else 1)
    if m0 > m1:
        return [("d", start, end)]
    out: list[tuple[str, int, int]] = []
    month_start = (date(m0 // 12, m0 % 12 + 1, 1) - _EPOCH).days
    after = m1 + 1
    month_end = (date(after // 12, after % 12 + 1, 1) - _EPOCH).days - 1
    if start < month_start:
        out.append(("d", start, month_start - 1))
    out.append(("m", m0, m1))
    if month_end < end:
        out.append(("d", month_end + 1, end))
    return out


def quantile(hist: Mapping[int, int], n: int, q: float) -> float | None:
    """The nearest-rank ``q`` quantile (seconds) of a histogram of ``n`` values."""
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return _middle(k)
    return _middle(max(hist)) if hist else None


def summary(tallies: Iterable[bytes]) -> dict[str, Any]:
    """One report group from the tallies it sums: the totals, and each measure's count,
    mean, median and p90 (seconds)."""
    total = Tally(counts={}, n={}, ms={}, hist={})
    for blob in tallies:
        t = _TALLY.decode(blob)
        timeline.add_into(total.counts, t.counts)
        timeline.add_into(total.n, t.n)
        timeline.add_into(total.ms, t.ms)
        for name, h in t.hist.items():
            timeline.add_into(total.hist.setdefault(name, {}), h)
    out: dict[str, Any] = {name: total.counts.get(name, 0) for name in COUNTS}
    measures: dict[str, Any] = {}
    for name in MEASURES:
        n = total.n.get(name, 0)
        hist = total.hist.get(name, {})
        measures[name] = {
            "count": n,
            "mean": round(total.ms.get(name, 0) / n / 1000, 3) if n else None,
            "median": _round(quantile(hist, n, 0.5)),
            "p90": _round(quantile(hist, n, 0.9)),
        }
    out["measures"] = measures
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
