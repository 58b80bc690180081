"""A bound on the webhook body bytes held across all in-flight requests.

Each request takes its share before it reads (its declared ``Content-Length``, or, for a
chunked body, each chunk as it arrives) and gives it back when it is answered. A share that
does not fit is refused, and the request answered 503 with ``Retry-After``, so a crowd of
large or slow uploads cannot grow the process past the budget. Bodies over
:data:`SMALL_BODY_BYTES` may fill at most :data:`LARGE_SHARE` of it: the rest is kept for
ordinary webhooks (a few KiB), which keep getting through while large uploads queue.
Single-threaded (one event loop), so plain integers suffice.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["LARGE_SHARE", "SMALL_BODY_BYTES", "BodyBudget"]

#: Bodies up to this size may use the whole budget; larger ones only :data:`LARGE_SHARE`.
SMALL_BODY_BYTES = 64 * 1024
LARGE_SHARE = Fraction(3, 4)


class BodyBudget:
    """``limit_bytes`` of body bytes, shared by every request of one receiver."""

    __slots__ = ("_in_use", "_large_limit", "limit_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._large_limit = int(limit_bytes * LARGE_SHARE)
        self._in_use = 0

    @property
    def in_use_bytes(self) -> int:
        """Bytes taken by requests not yet answered."""
        return self._in_use

    def take(self, held: int, more: int) -> bool:
        """Take ``more`` bytes for a body that already holds ``held``; False if they do not
        fit (nothing taken)."""
        ceiling = self.limit_bytes if held + more <= SMALL_BODY_BYTES else self._large_limit
        if self._in_use + more > ceiling:
            return False
        self._in_use += more
        return True

    def give_back(self, n: int) -> None:
        self._in_use -= n
