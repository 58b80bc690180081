"""Pausing Python's cyclic garbage collector while a batch is worked on.

Used by the projector's fold and the search consumer: both build, per batch, hundreds of
thousands of short-lived objects that hold no reference cycles.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is folded (or indexed).

    A batch allocates hundreds of thousands of short-lived objects (records, events,
    states) that survive long enough to be promoted, so the collector would run full
    collections over the whole heap — the cache included — every few batches. Nothing the
    fold builds is cyclic (reference counting frees it all), so collection waits until the
    batch is done; a batch is bounded, and so is what can pile up meanwhile.

    The collector is re-enabled on leaving only if it was enabled on entering, so pauses
    that overlap (a rebuild beside the runner) never leave it off: the first to have paused
    it turns it back on, possibly while the other still folds (which then merely runs with
    collection for the rest of its batch), and a process that disabled it keeps it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
