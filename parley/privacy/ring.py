"""A process's key ring: the key store behind a bounded cache, and the sealing and opening
of envelopes with it.

Every process that seals (the receiver) or opens (the projector, consumers) holds one ring.
Keys are cached for ``ttl_s`` seconds (at most ``size`` subjects, least recently used out
first), absent keys too, so a destroyed key stops being used by every process within
``ttl_s`` of its destruction; :meth:`KeyRing.forget` drops a subject at once (the process
that destroys a key, and a consumer told by the ``forgotten`` event, call it).

Opening is synchronous (it runs inside folds): :meth:`KeyRing.load` the subjects of a batch
first (one key-store round trip for what the cache lacks), then :meth:`KeyRing.open` each.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.envelope import Envelope
from parley.privacy.datakey import DataKey
from parley.privacy.keys import KeyStore
from parley.privacy.seal import (
    facts_and_parent,
    open_envelope,
    seal_body,
    seal_with_facts,
    subject_for,
)

__all__ = ["KeyRing"]

_Entry = tuple[float, DataKey | None, AESGCM | None]


class KeyRing:
    """Seals and opens envelopes with the keys of ``store``, cached (module docstring)."""

    def __init__(self, store: KeyStore, *, ttl_s: float = 10.0, size: int = 100_000,
                 clock: Callable[[], float] = time.monotonic, master_id: str = "") -> None:
        self.store = store
        self.master_id = master_id  # the current master key's id (never the key)
        self._opened = False
        self._opening = asyncio.Lock()
        self._ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._links: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def _ready(self) -> KeyStore:
        """The store, opened on first use (and again after a failed open): a key store
        that is down at start-up makes requests wait or fail, not the process."""
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
        return self.store

    async def rewrap(self) -> int:
        """:meth:`KeyStore.rewrap`: every data key under the current master key; how many."""
        return await (await self._ready()).rewrap()

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.store.close()

    def _put(self, subject: str, key: DataKey | None) -> _Entry:
        entry = (self._clock() + self._ttl_s, key, AESGCM(key.secret) if key else None)
        cache = self._cache
        cache[subject] = entry
        cache.move_to_end(subject)
        while len(cache) > self._size:
            cache.popitem(last=False)
        return entry

    def _fresh(self, subject: str) -> _Entry | None:
        entry = self._cache.get(subject)
        if entry is None or entry[0] < self._clock():
            return None
        return entry

    def forget(self, subject: str) -> None:
        """Stop using ``subject``'s cached key now (it was destroyed)."""
        self._cache.pop(subject, None)

    async def seal(self, env: Envelope) -> Envelope:
        """``env`` sealed with its subject's key (created on first use); records the chat's
        link to the visitor its body names, with the key when the key is new (one durable
        write). Raises KeyStoreUnavailable: nothing sealed."""
        subject = subject_for(env)
        facts, parent = facts_and_parent(env)
        link = parent if parent is not None and (subject, parent) not in self._links else None
        entry = self._fresh(subject)
        if entry is None or entry[1] is None:
            store = await self._ready()
            stale = self._cache.get(subject)
            key = None
            if link is None and stale is not None and stale[1] is not None:
                # A live key whose entry ran out: read it again, no write transaction (a
                # get_or_create is one, even when it finds the key), unless it was destroyed
                # meanwhile: then a new generation, as for a subject never seen.
                key = await store.get(subject)
            if key is None:
                key = await store.get_or_create(subject, link)
            entry = self._put(subject, key)
        elif link is not None:
            await (await self._ready()).link(subject, link)
        if link is not None:
            self._links[(subject, link)] = None
            if len(self._links) > self._size:
                self._links.popitem(last=False)
        key, aead = entry[1], entry[2]
        assert key is not None and aead is not None
        return seal_with_facts(env, key, aead, facts)

    async def load(self, subjects: Iterable[str]) -> None:
        """Make sure the cache holds a fresh entry (key or no key) for each subject."""
        missing = [s for s in dict.fromkeys(subjects) if self._fresh(s) is None]
        if missing:
            for subject, key in (await (await self._ready()).get_many(missing)).items():
                self._put(subject, key)

    def has_key(self, subject: str) -> bool:
        """Whether the cache holds a live key of ``subject`` (after :meth:`load`)."""
        entry = self._cache.get(subject)
        return entry is not None and entry[1] is not None

    def seal_loaded(self, env: Envelope) -> bytes:
        """``env``'s body sealed (:func:`~parley.privacy.seal.seal_body`) with the cached
        live key of its ``subject``, which must have been :meth:`load`-ed: never creates a
        key (KeyError if there is none: a bug, not data). For bodies that carry no facts of
        their own to keep (the state topics' values)."""
        subject = env.subject
        entry = None if isinstance(subject, msgspec.UnsetType) else self._cache.get(subject)
        if entry is None or entry[1] is None or entry[2] is None:
            raise KeyError(f"no live key of {subject} was loaded before sealing")
        return seal_body(env, entry[1], entry[2])

    def open(self, env: Envelope) -> Envelope:
        """``env`` opened with its subject's cached key (its facts only if the key is gone).
        The subject must have been :meth:`load`-ed (KeyError otherwise: a bug, not data)."""
        subject = env.subject
        if isinstance(subject, msgspec.UnsetType) or isinstance(env.sealed, msgspec.UnsetType):
            return env
        entry = self._cache.get(subject)
        if entry is None:
            raise KeyError(f"the key of {subject} was not loaded before opening")
        return open_envelope(env, entry[1], entry[2])

    async def open_one(self, env: Envelope) -> Envelope:
        """:meth:`load` then :meth:`open`, for one envelope off the hot path."""
        if not isinstance(env.subject, msgspec.UnsetType):
            await self.load((env.subject,))
        return self.open(env)
