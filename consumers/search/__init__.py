"""The built-in ``search`` consumer: chats and messages in an embedded full-text index."""

from consumers.search.consumer import build, search_consumer
from consumers.search.index import SearchIndex, SqliteSearchIndex
from consumers.search.queries import SearchHit, SearchPage, SearchQuery

__all__ = ["SearchHit", "SearchIndex", "SearchPage", "SearchQuery", "SqliteSearchIndex", "build",
           "search_consumer"]
