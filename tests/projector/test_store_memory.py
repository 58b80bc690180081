"""The store contract against the in-memory twin."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import pytest

from projector.memory_store import MemoryStore, _Copy
from projector.store import Store
from projector.stores import open_store
from tests.kit.store_contract import StoreContract


class MemoryHarness:
    def __init__(self, store: MemoryStore) -> None:
        self.store: Store = store

    async def reopen(self) -> Store:
        await self.store.close()
        await self.store.open()
        return self.store

    @contextlib.asynccontextmanager
    async def break_offset_writes(self, projection: str) -> AsyncIterator[None]:
        store = self.store
        assert isinstance(store, MemoryStore)

        def fail(copy: _Copy, offsets: Mapping[tuple[str, int], int]) -> None:
            raise RuntimeError("injected failure while writing offsets")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store, "_write_offsets", fail)
            yield


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[MemoryHarness]:
        store = open_store("memory://")
        assert isinstance(store, MemoryStore)
        await store.open()
        yield MemoryHarness(store)
        await store.close()
