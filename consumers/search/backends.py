"""Which search index a process uses: PostgreSQL full-text search when the store is PostgreSQL,
else SQLite FTS5 in a file of its own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from consumers.search.copies import SqliteCopies, SwitchingSearchIndex
from consumers.search.index import SearchIndex
from parley.pg.url import is_postgres_url
from parley.settings import Settings

__all__ = ["search_db_path", "search_index_for"]


def search_db_path(data_dir: str | Path, config: Mapping[str, object] | None = None) -> Path:
    """``[consumers.search] path`` if set, else ``<data_dir>/search.db``."""
    configured = (config or {}).get("path")
    return Path(str(configured)) if configured else Path(data_dir) / "search.db"


def search_index_for(settings: Settings, config: Mapping[str, object] | None = None) -> SearchIndex:
    """The (unopened) index for ``settings``: the store's PostgreSQL database and schema when
    ``store.url`` is ``postgresql://…`` (every instance then shares one index), otherwise
    ``[consumers.search] path`` or ``<data_dir>/search.db``. It follows the live copy of the
    index there, which ``parley consumers rebuild search`` replaces
    (:mod:`consumers.search.copies`)."""
    if is_postgres_url(settings.store.url):
        from consumers.search.pg_copies import PgCopies  # only PostgreSQL set-ups load asyncpg

        return SwitchingSearchIndex(PgCopies(settings.store.url))
    return SwitchingSearchIndex(SqliteCopies(search_db_path(settings.data_dir, config)))
