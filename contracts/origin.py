"""Where a domain event came from: the fields every domain event shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from contracts.envelope import Envelope

__all__ = ["Origin"]


class Origin(NamedTuple):
    """The envelope fields a normaliser stamps on each event it produces.

    Events are built with these as explicit keywords (``event_id=origin.event_id
    + "#chat"``…) rather than ``**``-unpacked: it is the hot path of the projector
    and explicit keywords construct a Struct several times faster.
    """

    event_id: str
    occurred_at: datetime
    provider: str
    source: str

    @classmethod
    def of(cls, env: Envelope) -> Origin:
        """The origin of events normalised from ``env``."""
        # tuple.__new__ directly: a NamedTuple's own __new__ is a Python-level function,
        # several times slower, and this runs once per record on every replay.
        return _tuple_new(cls, (env.event_id, env.occurred_at, env.provider, env.source))  # type: ignore[no-any-return]


_tuple_new: Any = tuple.__new__
