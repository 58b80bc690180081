"""A circuit breaker (pure; the caller passes the time).

Closed: requests flow; ``failures`` consecutive failures open it. Open: requests fail fast
for ``reset_s`` (a struggling CRM gets room to recover instead of a retry storm). Then
half-open: one trial request; success closes the circuit, failure opens it again.
"""

from __future__ import annotations

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._trial else "open"

    def allow(self, now: float) -> bool:
        """Whether a request may go out now (in half-open state: only one)."""
        if self._opened_at is None:
            return True
        if not self._trial and now - self._opened_at >= self.reset_s:
            self._trial = True
            return True
        return False

    def retry_in_s(self, now: float) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_s - now)

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self, now: float) -> None:
        self._failures += 1
        if self._trial or self._failures >= self.threshold:
            self._opened_at = now
            self._trial = False
