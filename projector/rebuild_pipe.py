"""One SQLite writer for a parallel rebuild: workers send their batches to it over a pipe.

SQLite has one write lock per file. When every worker of a parallel rebuild
(:mod:`projector.rebuild_worker`) committed through a connection of its own, they took turns
at the lock: a worker waited in SQLite's busy handler (sleeping and polling) while the other
committed, and each connection found the other's commits in the file at its next
transaction, which makes SQLite drop that connection's page cache and read the B-tree pages
again. Measured on a 300,000-record rebuild with two workers (docs/benchmarks.md, "Parallel
rebuilds"; a busy machine): their writer threads used 15.8 CPU-seconds against the one
process's 11.1 for the same rows, and each waited 34-41 s of a 136 s run for the lock.

So on SQLite the workers do not write. A worker's :class:`PipeStore` sends each request
(a batch's rows and next offsets to commit, states to load, the copy's offsets) encoded with
msgspec over a pipe to the process that started it, where :func:`serve` runs it and answers:
commits on that process's one writer connection, in the order they arrive, one at a time,
on a connection whose page cache stays warm; loads and offsets over a second pipe, on the
store's reader, so they never queue behind a commit. A worker still folds batch N+1 while
batch N is on its way and being committed
(:class:`~projector.rebuild_batches.BatchWriter`). A commit is answered only once it is
durable, and an error of the store comes back to the worker as a
:class:`~parley.errors.StoreError` with the same message. PostgreSQL takes concurrent
writers, so there each worker keeps its own connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Protocol

import msgspec

from parley.errors import StoreError
from projector.outbox import OutboxEntry
from projector.states import AggregateRef
from projector.store import Store
from projector.views import Row

__all__ = ["CopyWriter", "PipeStore", "serve"]


class CopyWriter(Protocol):
    """What a rebuild member needs of a store: load states, commit batches, read offsets."""

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        ...

    async def commit(self, projection: str, rows: Sequence[Row],
                     offsets: Mapping[tuple[str, int], int], *,
                     publish: bool = False) -> list[OutboxEntry]:
        ...

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        ...


class _Commit(msgspec.Struct, tag="commit", array_like=True):
    projection: str
    rows: list[Row]
    offsets: list[tuple[str, int, int]]
    publish: bool


class _Load(msgspec.Struct, tag="load", array_like=True):
    projection: str
    refs: list[tuple[str, str]]


class _Offsets(msgspec.Struct, tag="offsets", array_like=True):
    projection: str


_Request = _Commit | _Load | _Offsets

#: The answers: (error message or None, value); the value's type depends on the request.
_Stored = list[tuple[str, str, bytes]]
_Positions = list[tuple[str, int, int]]

_encode = msgspec.msgpack.Encoder().encode
_requests = msgspec.msgpack.Decoder(_Request)
_answers: dict[type, msgspec.msgpack.Decoder[Any]] = {
    _Commit: msgspec.msgpack.Decoder(tuple[str | None, None]),
    _Load: msgspec.msgpack.Decoder(tuple[str | None, _Stored | None]),
    _Offsets: msgspec.msgpack.Decoder(tuple[str | None, _Positions | None]),
}


class PipeStore:
    """A worker's end: the :class:`CopyWriter` calls, answered by :func:`serve` in the process
    at the other end of the pipes. Commits go over ``commits``, loads and offsets over
    ``reads`` (the same pipe if not given): each pipe carries one request at a time, and a
    worker that loads states while its previous batch is being committed
    (:class:`~projector.rebuild_batches.BatchWriter`) must not wait for that commit, nor for
    the other workers' commits queued at the writer before it. Each request waits for its
    answer in a thread, so the worker's event loop keeps folding meanwhile."""

    def __init__(self, commits: Connection, reads: Connection | None = None) -> None:
        self._commits = _Channel(commits)
        self._reads = _Channel(reads) if reads is not None else self._commits

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        found = await self._reads.ask(_Load(projection, [(ref.kind, ref.id) for ref in refs]))
        return {AggregateRef(kind, id): state
                for kind, id, state in found}

    async def commit(self, projection: str, rows: Sequence[Row],
                     offsets: Mapping[tuple[str, int], int], *,
                     publish: bool = False) -> list[OutboxEntry]:
        """Committed by the writer, in one transaction; the outbox entries (written when
        ``publish``) stay there: a rebuild does not use them."""
        await self._commits.ask(_Commit(projection, list(rows),
                                        [(t, p, o) for (t, p), o in offsets.items()], publish))
        return []

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in await self._reads.ask(_Offsets(projection))}


class _Channel:
    """One pipe: a request and its answer at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    async def ask(self, request: _Request) -> Any:
        data = _encode(request)
        async with self._lock:
            answer = await asyncio.to_thread(self._roundtrip, data)
        error, value = _answers[type(request)].decode(answer)
        if error is not None:
            raise StoreError(error)
        return value

    def _roundtrip(self, data: bytes) -> bytes:
        self._conn.send_bytes(data)
        return self._conn.recv_bytes()


async def serve(store: Store, conn: Connection) -> None:
    """Answer the requests of one pipe of a worker on ``store`` until its end closes (the
    worker exited). The pipe's blocking reads and writes run in a thread of their own. A
    worker's two pipes are served concurrently: loads and offsets run on the store's reader
    (committed data), beside the commits on its writer."""
    loop = asyncio.get_running_loop()
    io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-rebuild-pipe")
    try:
        while True:
            try:
                request = await loop.run_in_executor(io, _receive, conn)
            except (EOFError, OSError):
                return  # the worker is gone
            try:
                value = await _run(store, request)
                answer = _encode((None, value))
            except StoreError as exc:
                answer = _encode((str(exc), None))
            try:
                await loop.run_in_executor(io, conn.send_bytes, answer)
            except OSError:
                return
    finally:
        io.shutdown(wait=False)


def _receive(conn: Connection) -> _Request:
    return _requests.decode(conn.recv_bytes())


async def _run(store: Store, request: _Request) -> object:
    if isinstance(request, _Commit):
        await store.commit(request.projection, request.rows,
                           {(t, p): o for t, p, o in request.offsets}, publish=request.publish)
        return None
    if isinstance(request, _Load):
        refs = [AggregateRef(kind, id) for kind, id in request.refs]  # type: ignore[arg-type]
        found = await store.load(request.projection, refs)
        return [(ref.kind, ref.id, state) for ref, state in found.items()]
    return [(t, p, o) for (t, p), o in (await store.offsets(request.projection)).items()]
