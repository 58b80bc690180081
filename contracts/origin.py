"""Where a domain event came from: the fields every domain event shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from contracts.envelope import Envelope
from contracts.timestamps import as_utc

__all__ = ["MAX_CLOCK_SKEW", "Origin"]


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
    received_at: datetime | None = None
    log_offset: int | None = None
    #: Where the normaliser notes the body's fields it could not use (paths, no values).
    dropped: list[str] | None = None

    @classmethod
    def of(cls, env: Envelope, log_offset: int | None = None,
           dropped: list[str] | None = None) -> Origin:
        """The origin of events normalised from ``env``, read at ``log_offset``; what the
        normaliser cannot use is noted in ``dropped``."""
        # tuple.__new__ directly: a NamedTuple's own __new__ is a Python-level function,
        # several times slower, and this runs once per record on every replay.
        occurred, received = env.occurred_at, env.received_at
        if dropped is None:
            dropped = []
        if not _EARLIEST <= occurred <= received + MAX_CLOCK_SKEW:
            dropped.append("timestamp")  # an impossible time: when Parley got it is closer
            occurred = received
        return _tuple_new(cls, (env.event_id, occurred, env.provider, env.source,  # type: ignore[no-any-return]
                                received, log_offset, dropped))

    def at(self, when: datetime | None, field: str) -> Origin:
        """This origin with ``when`` (the body's ``field``) as the time of the change.

        ``None`` keeps the envelope's time; so does an impossible time (before 2000, or
        later than the receipt plus :data:`MAX_CLOCK_SKEW`), which is noted as dropped.
        """
        if when is None:
            return self
        when = as_utc(when)
        received = self.received_at
        if when < _EARLIEST or (received is not None and when > received + MAX_CLOCK_SKEW):
            if self.dropped is not None:
                self.dropped.append(field)
            return self
        return _tuple_new(Origin, (self.event_id, when, self.provider, self.source,  # type: ignore[no-any-return]
                                   received, self.log_offset, self.dropped))


_tuple_new: Any = tuple.__new__
#: How far a provider's clock may run ahead of Parley's before its times are impossible.
MAX_CLOCK_SKEW = timedelta(hours=1)
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
