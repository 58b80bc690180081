"""A parallel rebuild's workers write a SQLite copy through the process that started them
(projector.rebuild_pipe): a worker's end of a real pipe against the writer's end serving a
real SQLite store."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from parley.errors import StoreError
from projector.rebuild_pipe import PipeStore, serve
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef
from tests.kit.store_contract import chat, visitor


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.db", shared=True)
    await store.open()
    await store.create_projection("v1")
    try:
        yield store
    finally:
        await store.close()


async def test_commits_loads_and_offsets_go_through_the_writer(store: SqliteStore) -> None:
    ours, theirs = multiprocessing.Pipe()
    serving = asyncio.create_task(serve(store, ours))
    worker = PipeStore(theirs)
    rows = [chat("c1"), visitor("vis-1")]
    assert await worker.commit("v1", rows, {("t", 0): 7, ("t", 3): 2}) == []
    # In the writer's store, in one transaction with the offsets.
    assert await store.offsets("v1") == {("t", 0): 7, ("t", 3): 2}
    assert await store.get_view("v1", "visitor", "vis-1") == rows[1].view
    refs = [AggregateRef("chat", "c1"), AggregateRef("visitor", "vis-1"),
            AggregateRef("visitor", "nobody")]
    assert await worker.load("v1", refs) == await store.load("v1", refs)
    assert await worker.offsets("v1") == {("t", 0): 7, ("t", 3): 2}
    theirs.close()  # the worker exits: the writer stops serving it
    await asyncio.wait_for(serving, 10)


async def test_a_store_error_reaches_the_worker_and_the_writer_keeps_serving(
        store: SqliteStore) -> None:
    ours, theirs = multiprocessing.Pipe()
    serving = asyncio.create_task(serve(store, ours))
    worker = PipeStore(theirs)
    with pytest.raises(StoreError, match=r"^projection does not exist"):
        await worker.commit("v9", [chat("c1")], {("t", 0): 1})
    assert await store.offsets("v1") == {}
    await worker.commit("v1", [chat("c1")], {("t", 0): 1})
    assert await worker.offsets("v1") == {("t", 0): 1}
    theirs.close()
    await asyncio.wait_for(serving, 10)


async def test_loads_and_offsets_do_not_wait_behind_a_commit(store: SqliteStore) -> None:
    """A worker loads the states it no longer caches while its previous batch is still being
    committed (projector.rebuild_batches.BatchWriter): over its second pipe, on the store's
    reader, they are answered without waiting for that commit (or the other workers' commits
    queued before it)."""
    await store.commit("v1", [chat("c0")], {("t", 0): 1})
    started, gate = asyncio.Event(), asyncio.Event()
    commit = store.commit

    async def slow_commit(*args: Any, **kw: Any) -> Any:
        started.set()
        await gate.wait()
        return await commit(*args, **kw)

    store.commit = slow_commit  # type: ignore[method-assign]
    commits, commits_end = multiprocessing.Pipe()
    reads, reads_end = multiprocessing.Pipe()
    serving = [asyncio.create_task(serve(store, commits)), asyncio.create_task(serve(store, reads))]
    worker = PipeStore(commits_end, reads_end)
    committing = asyncio.create_task(worker.commit("v1", [chat("c1")], {("t", 0): 2}))
    await asyncio.wait_for(started.wait(), 10)
    ref = AggregateRef("chat", "c0")
    assert set(await asyncio.wait_for(worker.load("v1", [ref]), 5)) == {ref}
    assert await asyncio.wait_for(worker.offsets("v1"), 5) == {("t", 0): 1}
    assert not committing.done()
    gate.set()
    await asyncio.wait_for(committing, 10)
    assert await worker.offsets("v1") == {("t", 0): 2}
    commits_end.close()
    reads_end.close()
    await asyncio.wait_for(asyncio.gather(*serving), 10)
