"""Where a domain event came from: the fields every domain event shares."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

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
        return cls(env.event_id, env.occurred_at, env.provider, env.source)
