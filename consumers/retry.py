"""Backoff for retriable handler failures: bounded attempts, bounded delay, full jitter."""

from __future__ import annotations

import random

import msgspec

__all__ = ["RetryPolicy"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """``max_attempts`` tries in all (the first one included), then the event is dead-lettered.

    The wait before try ``n + 1`` is uniform in ``[0, min(max_delay_s, base_delay_s * 2**(n-1))]``
    ("full jitter"): retries of many keys failing together spread out instead of hammering a
    recovering dependency in lockstep. With the defaults the worst case is about 8 s per event.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy: max_attempts >= 1 and non-negative delays")

    def delay_s(self, attempt: int, rng: random.Random | None = None,
                at_least_s: float = 0.0) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based).

        ``at_least_s`` honours a server's ``Retry-After`` but is capped at ``max_delay_s`` too,
        so one event never blocks its key for longer than the policy allows.
        """
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempt - 1)))
        jittered = (rng or random).uniform(0, cap)
        return min(self.max_delay_s, max(jittered, at_least_s))
