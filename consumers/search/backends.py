"""Which search index a process uses: PostgreSQL full-text search when the store is PostgreSQL,
else SQLite FTS5 in a file of its own."""

from __future__ import annotations

from collections.abc import Mapping

from consumers.search.consumer import search_db_path
from consumers.search.index import SearchIndex, SqliteSearchIndex
from parley.settings import Settings

__all__ = ["search_index_for"]

_POSTGRES = ("postgresql://", "postgres://", "postgresql+asyncpg://", "postgresql+psycopg://")


def search_index_for(settings: Settings, config: Mapping[str, object] | None = None) -> SearchIndex:
    """The (unopened) index for ``settings``: the store's PostgreSQL database and schema when
    ``store.url`` is ``postgresql://…`` (every instance then shares one index), otherwise
    ``[consumers.search] path`` or ``<data_dir>/search.db``."""
    if settings.store.url.lower().startswith(_POSTGRES):
        from consumers.search.pg_index import PgSearchIndex  # only PostgreSQL set-ups load asyncpg

        return PgSearchIndex(settings.store.url)
    return SqliteSearchIndex(search_db_path(settings.data_dir, dict(config or {})))
