"""The built-in ``search`` consumer: the projector's chat and message states (the chat state
topic) → the full-text index, one transaction per batch. So a chat's status, agent and which
messages are searchable (not deleted, not agent-only) are the projector's decisions. Each row
keeps its state's version and only a later one replaces it, so at-least-once delivery, in any
order, is safe."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.api import ConsumedEvent, Consumer
from consumers.registry import ConsumerContext
from consumers.search.backends import search_index_for
from consumers.search.copies import SwitchingSearchIndex
from consumers.search.index import SearchIndex
from parley.gc_pause import gc_paused

__all__ = ["MAX_RECORDS", "build", "search_consumer"]

#: Records per fetched batch (``[consumers.search] max_records`` overrides it): one index
#: transaction a batch, and its fixed costs (the full-text index's segment flush, the commit's
#: page writes and fsync) shrink per state with larger batches; replaying at 2,000 a batch
#: spent about 2 us more CPU per state than at 10,000 (docs/benchmarks-history.md). A
#: live consumer fetches what has arrived, so its batches stay small.
MAX_RECORDS = 10_000


def search_consumer(index: SearchIndex, *, name: str = "search", own_index: bool = True
                    ) -> Consumer:
    """A batch consumer writing chat states into ``index`` (opened/closed by the consumer's
    start/stop hooks when ``own_index``); rebuildable (``parley consumers rebuild``) when the
    index follows copies (:func:`~consumers.search.backends.search_index_for`'s do)."""

    async def handle_batch(events: Sequence[ConsumedEvent]) -> None:
        # A batch's states, rows and statements are thousands of short-lived objects and no
        # cycles: collecting meanwhile walked them (and the heap) over and over, a quarter
        # of the CPU per state (docs/benchmarks-history.md).
        with gc_paused():
            await index.apply_states([ev.state for ev in events])

    return Consumer(name=name, handle_batch=handle_batch, topics=(), states=("chat",),
                    concurrency=1, max_records=MAX_RECORDS,
                    rebuildable=index if isinstance(index, SwitchingSearchIndex) else None,
                    start=index.open if own_index else None,
                    stop=index.close if own_index else None)


def build(ctx: ConsumerContext) -> Consumer:
    """Entry-point factory: ``parley consumer search``."""
    return search_consumer(search_index_for(ctx.settings, ctx.config), name=ctx.name)
