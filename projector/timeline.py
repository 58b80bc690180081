"""An agent's time, per UTC day: when it was online and how many chats it had active, kept as
summable roll-ups so a report over any range of days reads them instead of chats. Pure (no
I/O); :mod:`projector.rollups` moves them in the same commit as the rows.

Per agent and day, a :class:`Day` holds two step functions of the time of day as their
changes (milliseconds since midnight UTC -> +n / -n): ``online``, the agent's online spells
(moved by :func:`projector.spells.place` as status changes are folded), and ``chats``, the
chats it held, each from its acceptance to its close (from the chats' facts). Both are sums
of intervals, so adding and removing them commutes: a day's functions are the same whatever
order the chats and status changes arrived in. An interval crossing midnight is cut there,
each day getting its part.

Each day also keeps what its functions give (its :class:`Usage`, first in the blob, so a
report decodes only that); per agent and month, a :class:`Usage` holds the days' summed: online
time, time with at least one chat, online time with at least one chat, chat-time while
online, and time at each number of chats at once. A day's usage is not a sum of its
intervals' (occupancy is an intersection), so when a day's functions move, its month moves
by the difference of the day's usage before and after. docs/analytics.md defines each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["DAY_MS", "Day", "Usage", "add_day", "add_into", "add_usage", "cut", "day_usage", "decode_day",
           "decode_usage", "encode_usage", "ms", "shift", "summary", "usage"]

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Usage(msgspec.Struct, array_like=True, omit_defaults=True):
    """What an agent's days give, summed (milliseconds): ``online``; ``busy``, with at least
    one chat active; ``occupied``, online with at least one chat; ``chat_online``, chats
    active while online, each counted (the integral of their number); ``levels``, the time
    with exactly n chats active, by n >= 1."""

    online: int = 0
    busy: int = 0
    occupied: int = 0
    chat_online: int = 0
    levels: dict[int, int] = {}


class Day(msgspec.Struct, array_like=True):
    """One agent's day: its online spells and its chats, as changes (ms of day -> delta),
    and what they give (``used``: kept first, so a report decodes only it)."""

    used: Usage = msgspec.field(default_factory=Usage)
    online: dict[int, int] = {}
    chats: dict[int, int] = {}


class _Used(msgspec.Struct, array_like=True):
    """A day's first field only (the rest is ignored)."""

    used: Usage = msgspec.field(default_factory=Usage)


_DAY = msgspec.msgpack.Decoder(Day)
_USED = msgspec.msgpack.Decoder(_Used)
_USAGE = msgspec.msgpack.Decoder(Usage)
_ENC = msgspec.msgpack.Encoder()


def ms(at: datetime) -> int:
    """Milliseconds since the epoch (floored: exact for the providers' second and
    millisecond times)."""
    return (at - _EPOCH) // _ONE_MS


_ONE_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - _EPOCH


def cut(start: int, end: int) -> Iterable[tuple[int, int, int]]:
    """The interval [start, end) (ms since the epoch) as (day, from, to) parts, each within
    one UTC day (from and to in ms of that day; to is at most :data:`DAY_MS`)."""
    while start < end:
        day, offset = divmod(start, DAY_MS)
        stop = min(end - day * DAY_MS, DAY_MS)
        yield day, offset, stop
        start = day * DAY_MS + stop


def usage(day: Day) -> Usage:
    """What one day's functions give (a sweep over their changes, in time order)."""
    out = Usage(levels={})
    points = sorted(day.online.keys() | day.chats.keys())
    online = chats = 0
    last = 0
    levels = out.levels
    for at in points:
        span = at - last
        if span:
            if online > 0:
                out.online += span
                if chats > 0:
                    out.occupied += span
                    out.chat_online += span * chats
            if chats > 0:
                out.busy += span
                levels[chats] = levels.get(chats, 0) + span
        online += day.online.get(at, 0)
        chats += day.chats.get(at, 0)
        last = at
    return out


def add_into(into: dict[Any, int], delta: Mapping[Any, int]) -> None:
    """Add ``delta`` into ``into``, key by key, dropping the keys whose sum is zero (a sparse
    tally: equal sums give equal dicts, however they were reached)."""
    for k, v in delta.items():
        total = into.get(k, 0) + v
        if total:
            into[k] = total
        else:
            into.pop(k, None)


def decode_day(blob: bytes | None) -> Day:
    return _DAY.decode(blob) if blob else Day(used=Usage(levels={}), online={}, chats={})


def day_usage(blob: bytes) -> Usage:
    """What a stored day gives (its ``used``, decoded alone)."""
    return _USED.decode(blob).used


def decode_usage(blob: bytes | None) -> Usage:
    return _USAGE.decode(blob) if blob else Usage(levels={})


def add_day(stored: bytes | None, delta: Day) -> tuple[bytes, Usage]:
    """A stored day with ``delta`` added (empty bytes once nothing is left), and how its
    usage moved (new less old: what to add to its month)."""
    day = decode_day(stored)
    before = day.used
    add_into(day.online, delta.online)
    add_into(day.chats, delta.chats)
    after = usage(day)
    moved = Usage(online=after.online - before.online, busy=after.busy - before.busy,
                  occupied=after.occupied - before.occupied,
                  chat_online=after.chat_online - before.chat_online, levels=dict(after.levels))
    add_into(moved.levels, {k: -v for k, v in before.levels.items()})
    if not (day.online or day.chats):
        return b"", moved
    return _ENC.encode(Day(used=after, online=dict(sorted(day.online.items())),
                           chats=dict(sorted(day.chats.items())))), moved


def add_usage(total: Usage, more: Usage) -> None:
    """Add ``more`` into ``total``."""
    total.online += more.online
    total.busy += more.busy
    total.occupied += more.occupied
    total.chat_online += more.chat_online
    add_into(total.levels, more.levels)


def encode_usage(u: Usage) -> bytes:
    """A month's usage (empty bytes when nothing is left)."""
    if not (u.online or u.busy or u.occupied or u.chat_online or u.levels):
        return b""
    return _ENC.encode(Usage(online=u.online, busy=u.busy, occupied=u.occupied,
                             chat_online=u.chat_online, levels=dict(sorted(u.levels.items()))))


def shift(into: dict[int, int], start: int, end: int, sign: int) -> None:
    """Add ``sign`` over [start, end) (ms of one day) to a day's function."""
    into[start] = into.get(start, 0) + sign
    into[end] = into.get(end, 0) - sign


def summary(u: Usage) -> dict[str, Any]:
    """An agent's usage over a range, as served (seconds; docs/analytics.md)."""
    return {
        "online_s": u.online / 1000,
        "busy_s": u.busy / 1000,
        "occupied_s": u.occupied / 1000,
        "occupancy": round(u.occupied / u.online, 4) if u.online else None,
        "concurrency_avg": round(u.chat_online / u.online, 3) if u.online else None,
        "concurrency_max": max(u.levels) if u.levels else 0,
        "concurrency_s": {str(n): t / 1000 for n, t in sorted(u.levels.items())},
    }
