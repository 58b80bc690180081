"""No time from the future enters the fold: times in events later than the receipt plus
:data:`contracts.origin.MAX_CLOCK_SKEW` are clamped (docs/security.md, hole 10).

The normalisers already keep such times out of ``occurred_at`` (the time that orders writes,
:class:`contracts.origin.Origin`), but a body carries other times too — a Natterly message's
``created_at``, a chat's ``last_message_at`` or ``initiated_at``, a ChatShipper conversation's
``createdAt`` — and some of them are merged as a maximum: a message "posted" in the year 9999
would be the chat's last activity for ever. Here, where every event enters the fold, each
such time is checked: an optional one (a time the event may leave unsaid) becomes unsaid, a
required one becomes the event's ``occurred_at``. :class:`projector.folder.Folder` counts
them (``parley_projector_future_times_total{provider,field}``) and logs the event id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, get_args

import msgspec

from contracts import domain as d
from contracts.domain import DomainEvent
from contracts.origin import MAX_CLOCK_SKEW

__all__ = ["clamp_future"]

# Per event type: its datetime fields other than occurred_at / received_at, each with
# whether it may be None (then an impossible value is dropped rather than replaced).
_Times = tuple[tuple[str, bool], ...]
_SKIP = frozenset({"occurred_at", "received_at"})


def _times_of(cls: type[Any]) -> _Times:
    out = []
    for field in msgspec.structs.fields(cls):
        if field.name in _SKIP:
            continue
        if field.type is datetime:
            out.append((field.name, False))
        elif field.type == datetime | None:
            out.append((field.name, True))
    return tuple(out)


_TIMES: dict[type, _Times] = {cls: _times_of(cls) for cls in get_args(DomainEvent)}
_replace = msgspec.structs.replace


def clamp_future(event: DomainEvent, clamped: list[str],
                 skew: timedelta = MAX_CLOCK_SKEW) -> DomainEvent:
    """``event`` with no time later than its ``received_at`` plus ``skew``; the names of the
    times changed (``Kind.field``) are added to ``clamped``. Events without a receive time
    (not read from the log) are returned as they are."""
    received = event.received_at
    if received is None:
        return event
    limit = received + skew
    changes: dict[str, Any] = {}
    kind = type(event)
    for name, optional in _TIMES.get(kind, ()):
        value = getattr(event, name)
        if value is not None and value > limit:
            changes[name] = None if optional else event.occurred_at
    if kind is d.VisitorSeen:
        page = event.page  # type: ignore[union-attr]
        if page is not None and page.at > limit:
            changes["page"] = _replace(page, at=event.occurred_at)
    if not changes:
        return event
    clamped.extend(f"{kind.__name__}.{name}" for name in changes)
    return _replace(event, **changes)
