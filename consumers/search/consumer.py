"""The built-in ``search`` consumer: chat events → the full-text index (one transaction per
batch). Idempotent (see :mod:`consumers.search.index`), so at-least-once delivery is safe."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from consumers.api import ConsumedEvent, Consumer
from consumers.registry import ConsumerContext
from consumers.search.index import SearchIndex
from contracts.domain import DomainEvent

__all__ = ["build", "search_consumer", "search_db_path"]


def search_db_path(data_dir: str | Path, config: dict[str, object] | None = None) -> Path:
    """``[consumers.search] path`` if set, else ``<data_dir>/search.db``."""
    configured = (config or {}).get("path")
    return Path(str(configured)) if configured else Path(data_dir) / "search.db"


def search_consumer(index: SearchIndex, *, name: str = "search", own_index: bool = True
                    ) -> Consumer:
    """A batch consumer writing chat events into ``index`` (opened/closed by the consumer's
    start/stop hooks when ``own_index``)."""

    async def handle_batch(events: Sequence[ConsumedEvent]) -> None:
        domain: list[DomainEvent] = []
        for ev in events:
            domain.extend(ev.domain)
        await index.apply(domain)

    return Consumer(name=name, handle_batch=handle_batch, topics=("chat",), concurrency=1,
                    start=index.open if own_index else None,
                    stop=index.close if own_index else None)


def build(ctx: ConsumerContext) -> Consumer:
    """Entry-point factory: ``parley consumer search``."""
    from consumers.search.backends import search_index_for  # imports this module

    return search_consumer(search_index_for(ctx.settings, ctx.config), name=ctx.name)
