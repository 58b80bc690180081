"""Webhooks per source over the last hour, from the receiver's counters in this process
(``parley_receiver_requests{source, event_type, status}``): sampled every ``every_s`` into a
ring of an hour, so a window's counts are the difference between its newest and oldest
sample. Counters are per process: with several receiver replicas each console shows its
own; the Kafka side of the overview (records appended per topic, by offsets for times)
counts every replica's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

__all__ = ["SourceTraffic", "Traffic"]

METRIC = "parley_receiver_requests"


@dataclass(frozen=True)
class SourceTraffic:
    """One source's answers in the window: ``accepted`` (2xx) and ``rejected`` by status."""

    source: str
    accepted: int
    rejected: dict[str, int]


class Traffic:
    """The ring of samples (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry, *, window_s: float = 3600.0,
                 every_s: float = 10.0) -> None:
        self._registry = registry
        self.window_s = window_s
        self.every_s = every_s
        self._samples: deque[tuple[float, dict[tuple[str, str], float]]] = deque(
            maxlen=int(window_s / every_s) + 2)

    def _read(self) -> dict[tuple[str, str], float]:
        counts: dict[tuple[str, str], float] = {}
        for family in self._registry.collect():
            if family.name != METRIC:
                continue
            for s in family.samples:
                if s.name == METRIC + "_total":
                    key = (s.labels["source"], s.labels["status"])
                    counts[key] = counts.get(key, 0.0) + s.value
        return counts

    def sample(self, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, self._read()))

    @property
    def served(self) -> bool:
        """Whether this process's registry has the receiver's counters (it runs the receiver)."""
        return any(family.name == METRIC for family in self._registry.collect())

    def last_window(self, now: float | None = None) -> tuple[list[SourceTraffic], float]:
        """Per source, the answers since the oldest sample still in the window, and how many
        seconds that covers (less than the window while the process is young)."""
        now = time.monotonic() if now is None else now
        current = self._read()
        base: dict[tuple[str, str], float] = {}
        since = now
        for at, counts in self._samples:
            if now - at <= self.window_s:
                base, since = counts, at
                break
        by_source: dict[str, SourceTraffic] = {}
        for (source, status), value in sorted(current.items()):
            n = int(value - base.get((source, status), 0.0))
            t = by_source.setdefault(source, SourceTraffic(source, 0, {}))
            if status.startswith("2"):
                by_source[source] = SourceTraffic(source, t.accepted + n, t.rejected)
            elif n:
                t.rejected[status] = t.rejected.get(status, 0) + n
        return list(by_source.values()), now - since

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: sample every ``every_s`` while the app serves."""
        async def loop() -> None:
            while True:
                self.sample()
                await asyncio.sleep(self.every_s)

        task = asyncio.create_task(loop(), name="console-traffic")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
