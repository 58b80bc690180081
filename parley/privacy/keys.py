"""The key store: one data key per data subject, wrapped by the master key, apart from the log.

Guarantees every implementation keeps (one contract suite, tests/parley/privacy, runs them on
each):

1. :meth:`KeyStore.get_or_create` returns the subject's live key, creating it if there is
   none. Two callers creating a first key at once (two receivers, two processes) get the
   *same* key: exactly one insert wins and the other reads it. Given a ``parent``, it also
   records the link (guarantee 4) in the same durable write: a chat's first webhook that
   names its visitor costs one commit, not two.
2. :meth:`KeyStore.destroy` removes the key material for good (the row keeps only a
   tombstone: subject, generation, when) and says whether a key existed. From then on
   :meth:`KeyStore.get` returns None for the subject.
3. A subject destroyed and then seen again gets a *new* key of the next ``generation``;
   records sealed under the old generation stay unreadable (a returning visitor starts
   afresh, their erased past stays erased).
4. Links (``chat subject → visitor subject``) are kept until the chat's key is destroyed;
   :meth:`KeyStore.linked` lists the chats of a visitor, for erasure.
5. Key material never leaves the store unwrapped except as the return value; the store
   holds only wrapped keys and the id of the master key that wrapped each.

Implementations: :class:`~parley.privacy.keys_sqlite.SqliteKeyStore` (one machine),
:class:`~parley.privacy.keys_postgres.PostgresKeyStore` (several receivers and projectors),
:class:`MemoryKeyStore` (unit tests). :func:`open_key_store` picks one from a URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from parley.errors import UnsupportedStore
from parley.pg.url import is_postgres_url
from parley.privacy.datakey import DATA_KEY_BYTES, DataKey, new_data_key
from parley.privacy.master import MasterKeys

__all__ = ["DATA_KEY_BYTES", "DataKey", "KeyStore", "MemoryKeyStore", "new_data_key",
           "open_key_store"]

class KeyStore(Protocol):
    """Per-subject data keys (see the module docstring for the guarantees)."""

    async def open(self) -> None:
        """Connect and create the tables if needed (idempotent)."""

    async def close(self) -> None: ...

    async def get_or_create(self, subject: str, parent: str | None = None) -> DataKey:
        """The subject's live key, created now if it has none (guarantees 1 and 3); with
        ``parent``, :meth:`link` to it in the same write."""

    async def get(self, subject: str) -> DataKey | None:
        """The subject's live key, or None: never created, or destroyed."""

    async def get_many(self, subjects: Sequence[str]) -> dict[str, DataKey | None]:
        """:meth:`get` for each of ``subjects`` in one round trip."""

    async def destroy(self, subject: str) -> bool:
        """Destroy the subject's key and its links as a chat; True if a live key existed."""

    async def destroyed(self, subjects: Sequence[str]) -> set[str]:
        """Those of ``subjects`` whose latest key was destroyed (forgotten, no live key since):
        a process that only re-publishes what it holds must not make them a new key."""

    async def link(self, subject: str, parent: str) -> None:
        """Record that ``subject`` (a chat) belongs to ``parent`` (its visitor)."""

    async def linked(self, parent: str) -> list[str]:
        """The subjects linked to ``parent``, sorted."""

    async def rewrap(self) -> int:
        """Wrap every live key not yet under the current master key with it; how many."""


def open_key_store(url: str, masters: MasterKeys) -> KeyStore:
    """Build (not yet open) the key store ``url`` names: ``sqlite:///path/keys.db``,
    ``postgresql://…`` (tables in that database and ``?schema=``), or ``memory://``."""
    scheme, sep, rest = url.partition("://")
    if is_postgres_url(url):
        from parley.privacy.keys_postgres import PostgresKeyStore

        return PostgresKeyStore(url, masters)
    if scheme.lower() == "memory":
        return MemoryKeyStore(masters)
    if scheme.lower() == "sqlite" and rest.startswith("/") and len(rest) > 1:
        from parley.privacy.keys_sqlite import SqliteKeyStore

        path = rest.removeprefix("/").partition("?")[0]
        return SqliteKeyStore(":memory:" if path == ":memory:" else Path.cwd() / path, masters)
    raise UnsupportedStore("privacy.key_store must be sqlite:///path/keys.db, "
                           "postgresql://user:password@host:5432/db or memory://"
                           if sep else "privacy.key_store has no scheme")


@dataclass
class _Row:
    generation: int
    master_id: str | None
    wrapped: bytes | None
    destroyed_at: datetime | None = None


class MemoryKeyStore:
    """The in-memory twin, for unit tests: same guarantees, one process, nothing durable."""

    def __init__(self, masters: MasterKeys) -> None:
        self._masters = masters
        self._rows: dict[str, _Row] = {}
        self._links: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()
        self.available = True  # tests switch it off to act out an outage

    async def open(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    def _check(self) -> None:
        if not self.available:
            from parley.privacy.errors import KeyStoreUnavailable

            raise KeyStoreUnavailable("the key store is unavailable")

    def _key(self, subject: str, row: _Row | None) -> DataKey | None:
        if row is None or row.wrapped is None or row.master_id is None:
            return None
        return DataKey(subject, row.generation,
                       self._masters.unwrap(subject, row.master_id, row.wrapped))

    async def get_or_create(self, subject: str, parent: str | None = None) -> DataKey:
        self._check()
        async with self._lock:
            if parent is not None:
                self._links.add((subject, parent))
            row = self._rows.get(subject)
            if row is None or row.wrapped is None:
                master_id, wrapped = self._masters.wrap(subject, new_data_key())
                row = self._rows[subject] = _Row((row.generation if row else 0) + 1,
                                                 master_id, wrapped)
            key = self._key(subject, row)
            assert key is not None
            return key

    async def get(self, subject: str) -> DataKey | None:
        self._check()
        return self._key(subject, self._rows.get(subject))

    async def get_many(self, subjects: Sequence[str]) -> dict[str, DataKey | None]:
        self._check()
        return {s: self._key(s, self._rows.get(s)) for s in subjects}

    async def destroy(self, subject: str) -> bool:
        self._check()
        row = self._rows.get(subject)
        self._links = {pair for pair in self._links if pair[0] != subject}
        if row is None or row.wrapped is None:
            return False
        row.wrapped = row.master_id = None
        row.destroyed_at = datetime.now(UTC)
        return True

    async def destroyed(self, subjects: Sequence[str]) -> set[str]:
        self._check()
        return {s for s in subjects if (row := self._rows.get(s)) is not None and row.wrapped is None}

    async def link(self, subject: str, parent: str) -> None:
        self._check()
        self._links.add((subject, parent))

    async def linked(self, parent: str) -> list[str]:
        self._check()
        return sorted(s for s, p in self._links if p == parent)

    async def rewrap(self) -> int:
        self._check()
        n = 0
        for subject, row in self._rows.items():
            if row.wrapped is not None and row.master_id is not None \
                    and row.master_id != self._masters.current.id:
                key = self._masters.unwrap(subject, row.master_id, row.wrapped)
                row.master_id, row.wrapped = self._masters.wrap(subject, key)
                n += 1
        return n
