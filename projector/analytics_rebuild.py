"""``parley projections rebuild analytics``: the live copy's report roll-ups rebuilt with the
code running now, beside the live ones, then switched in at once (docs/analytics.md,
"Changing a definition").

1. **Begin** (one transaction): create the shadow roll-ups, copy the agents' online spells
   into them, and mark the copy, so every commit from then on moves the shadow as well as
   the live roll-ups (:class:`~projector.analytics_shadow.Shadow`).
2. **Walk** the copy's chats in id order, a step of ``chunk`` chats per transaction, each
   chat's fact recomputed from its stored fold state and moved into the shadow by the
   difference from what the shadow holds. A commit of a chat before or after the step that
   walks it moves the shadow by its own difference; either way the shadow ends with the
   fact of the chat's latest state, counted once.
3. **Switch** (one transaction): the shadow replaces the live roll-ups.

The query API reads the live roll-ups until the switch, the projector keeps folding
throughout. An error or an interrupt before the switch drops the shadow and leaves the live
roll-ups as they were; a rebuild killed outright leaves its shadow marked (shown by
``parley projections status``, still moved by every commit), and the next ``rebuild
analytics`` drops it and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TextIO, runtime_checkable

from parley.errors import StoreUnavailable
from projector.analytics_shadow import WALKED, Shadow, Walked
from projector.rebuild import RebuildError
from projector.store import Store

__all__ = ["ANALYTICS", "AnalyticsReport", "HasShadow", "rebuild_analytics"]

#: The name ``parley projections rebuild`` takes for this rebuild (not a copy's name).
ANALYTICS = "analytics"
#: Tries of one walk step that finds the store busy (a lock held past its timeout).
_TRIES = 5


@runtime_checkable
class HasShadow(Protocol):
    """A store that can rebuild a copy's roll-ups beside the live ones."""

    def analytics_shadow(self) -> Shadow: ...


@dataclass(frozen=True)
class AnalyticsReport:
    name: str  # the copy whose roll-ups were rebuilt
    walked: int  # chats and agents
    seconds: float


async def rebuild_analytics(store: Store, *, chunk: int = 500, out: TextIO | None = None,
                            progress_every_s: float = 2.0,
                            after_step: Callable[[int], Awaitable[None]] | None = None
                            ) -> AnalyticsReport:
    """Rebuild the live copy's roll-ups (see the module docstring). ``after_step(done)``
    runs after each step of the walk (tests read and commit there)."""
    if not isinstance(store, HasShadow):
        raise RebuildError("`parley projections rebuild analytics` needs a SQLite file or "
                           "PostgreSQL store; nothing was changed")
    name = await store.live_projection()
    if name is None:
        raise RebuildError("no live projection yet: nothing to rebuild the analytics of")
    out = out or sys.stderr
    shadow = store.analytics_shadow()
    start = time.monotonic()
    total = await shadow.begin(name)
    done = 0
    try:
        last_print = start
        for kind in WALKED:
            after: str | None = ""
            while after is not None:
                after, n = await _step(shadow, name, kind, after, chunk)
                done += n
                now = time.monotonic()
                if n and now - last_print >= progress_every_s:
                    last_print = now
                    print(_progress(name, done, total, now - start), file=out, flush=True)
                if n and after_step is not None:
                    await after_step(done)
        await shadow.switch(name)
    except BaseException:
        # Cancelled (Ctrl-C) or failed: the live roll-ups never changed; drop the shadow so
        # commits stop moving it. If even that fails the next rebuild drops it.
        with contextlib.suppress(Exception):
            await shadow.abandon(name)
        raise
    seconds = time.monotonic() - start
    print(_progress(name, done, max(total, done), seconds), file=out, flush=True)
    return AnalyticsReport(name=name, walked=done, seconds=seconds)


async def _step(shadow: Shadow, name: str, kind: Walked, after: str, chunk: int
                ) -> tuple[str | None, int]:
    for attempt in range(_TRIES):
        try:
            return await shadow.walk(name, kind, after, chunk)
        except StoreUnavailable:  # busy or deadlocked: the step was rolled back, redo it
            if attempt == _TRIES - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _progress(name: str, done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{max(total - done, 0) / rate:.0f} s" if rate > 0 else "?"
    pct = 100.0 * done / total if total else 100.0
    return (f"rebuild analytics of {name}: {done}/{total} chats and agents ({pct:.1f}%), "
            f"{rate:.0f}/s, ETA {eta}")
