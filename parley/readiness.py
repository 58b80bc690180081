"""Readiness, checked at most once per TTL however often ``/readyz`` is asked.

``/readyz`` is open to anyone who reaches the port, and a check may cost a round trip (the
receiver's asks Kafka for metadata). :class:`ReadinessCache` runs every role's checks at most
once per ``ttl_s`` and lets concurrent callers share the run in flight, so a flood of
``/readyz`` requests sends at most one metadata request per TTL; the answer is at most
``ttl_s`` old.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.errors import KafkaError

from parley.errors import KafkaRefused, KafkaUnavailable, ParleyError, SettingsError
from parley.runtime import ReadinessCheck

__all__ = ["READY_TTL_S", "ReadinessCache", "failure_reason"]

#: How long a readiness result is reused. Orchestrators probe every few seconds (Kubernetes:
#: 5 s here), so one second of staleness changes nothing for them.
READY_TTL_S = 1.0


class ReadinessCache:
    """The results of ``checks`` (name → None when ready, else one line saying why), computed
    at most once per ``ttl_s``. ``checks`` is read at each run, so roles may add theirs after
    the cache is built. A check that raises or takes longer than ``timeout_s`` is not ready."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], *, ttl_s: float = READY_TTL_S,
                 timeout_s: float = 2.0) -> None:
        self._checks = checks
        self.ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._result: dict[str, str | None] | None = None
        self._at = 0.0
        self._running: asyncio.Task[dict[str, str | None]] | None = None

    async def results(self) -> dict[str, str | None]:
        loop = asyncio.get_running_loop()
        if self._result is not None and loop.time() - self._at < self.ttl_s:
            return self._result
        if self._running is None:
            self._running = loop.create_task(self._run(), name="readiness")
            self._running.add_done_callback(self._done)
        # Shielded: a caller that disconnects does not cancel the run others wait for.
        return await asyncio.shield(self._running)

    def _done(self, task: asyncio.Task[dict[str, str | None]]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._result, self._at = task.result(), asyncio.get_running_loop().time()

    async def _run(self) -> dict[str, str | None]:
        names = sorted(self._checks)
        answers = await asyncio.gather(*(self._one(self._checks[n]) for n in names))
        return dict(zip(names, answers, strict=True))

    async def _one(self, check: ReadinessCheck) -> str | None:
        try:
            return await asyncio.wait_for(check(), timeout=self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - a failing check means "not ready"
            return f"check failed: {type(exc).__name__}"


def failure_reason(exc: BaseException) -> str:
    """A failure as ``/readyz`` and ``/api/consumers`` may show it: a class of failure and the
    exception's type, never its text. Exception messages name broker and database hosts, SASL
    users and file paths; the full exception goes to the log, for the operator."""
    name = type(exc).__name__
    match exc:
        case KafkaUnavailable():
            kind = "Kafka unavailable"
        case KafkaRefused():
            kind = "Kafka refused a request"
        case SettingsError():
            kind = "configuration error"
        case ParleyError():
            kind = "failed"
        case KafkaError() if "Auth" in name or "Sasl" in name:
            kind = "Kafka refused the credentials"
        case KafkaError():
            kind = "Kafka error"
        case TimeoutError():
            kind = "timed out"
        case OSError():
            kind = "connection failed"
        case _:
            kind = "failed"
    return f"{kind} ({name})"
