"""A rebuild's CPU per record, stage by stage, without Kafka (issue 18's performance work).

``bench/replay.py`` times whole rebuilds, whose wall clock follows the machine's load; this
measures what the code spends, in CPU time of the thread that spends it
(``time.thread_time``), on the same generated log (``bench/replay_data.py``), partitioned as
the receiver partitions it:

- **fold**: :meth:`projector.folder.Folder.fold` on batches of ``--batch`` records (20,000, a
  rebuild's), decode to rows, in the main thread;
- **commit (caller)**: what :meth:`SqliteStore.commit` does before handing over (statement
  parameters);
- **writer thread**: the store's writer thread: the upserts, the roll-ups, the COMMIT;
- with ``--members 2``, as a parallel rebuild on SQLite does it: each member folds its half
  of the partitions with a folder of its own and sends each batch over the pipe
  (:mod:`projector.rebuild_pipe`): **pipe encode** (the worker) and **pipe decode** (the
  coordinator) are timed too, and the store is opened ``shared`` (visitors and agents
  merged with the stored rows on commit).

- with ``--members 2s`` (a layout measured for issue 18, not what Parley does): each member
  writes every partition into a SQLite file of its own (a plain store per partition, so no
  writer is shared while folding), and a **merge** stage then copies the files into one copy
  the way SQLite can fastest (``INSERT … SELECT`` from each attached file: rows, facts,
  tallies, offsets), then joins the visitors and agents each file holds partly with the
  stored ones (a shared :meth:`SqliteStore.commit`, as the parallel rebuild's writer does).
  Tallies two files share are not summed, so the merge figure is a lower bound.

Batches are folded and committed one after the other (no overlap), so each stage's CPU is
its own. Rounds alternate between ``--members`` values; the best round per stage counts (CPU
time on a shared machine still grows a little with the load: caches, frequency).

    .venv/bin/python bench/replay_stages.py [--records 100000] [--members 1,2,2s] [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path[:0] = [str(_ROOT), str(_HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

from aiokafka.structs import ConsumerRecord  # noqa: E402
from replay_data import generate  # noqa: E402

from contracts.topics import Topics  # noqa: E402
from projector import rebuild_pipe  # noqa: E402
from projector.folder import Folder, gc_paused  # noqa: E402
from projector.pg_merge import MERGED_KINDS  # noqa: E402
from projector.sqlite_store import SqliteStore  # noqa: E402
from projector.sqlite_workers import Worker  # noqa: E402
from projector.views import Row  # noqa: E402
from receiver.partitioner import partition_for  # noqa: E402

T = TypeVar("T")
PARTITIONS = 6


def records(n: int, seed: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The generated log as a consumer would read it: offsets per topic partition."""
    nexts: dict[tuple[str, int], int] = defaultdict(int)
    out: list[ConsumerRecord[bytes, bytes]] = []
    for n_, (topic, key, value) in enumerate(generate(n, Topics(prefix="stages"), seed=seed)):
        partition = partition_for(key, PARTITIONS)
        offset = nexts[(topic, partition)]
        nexts[(topic, partition)] = offset + 1
        out.append(ConsumerRecord(topic, partition, offset, 1_700_000_000_000 + n_, 0, key, value,
                                  None, len(key), len(value), []))
    return out


def batches(log: Sequence[ConsumerRecord[bytes, bytes]], members: int, size: int
            ) -> list[list[list[ConsumerRecord[bytes, bytes]]]]:
    """Each member's batches: its partitions (by partition number) in log order."""
    mine: list[list[ConsumerRecord[bytes, bytes]]] = [[] for _ in range(members)]
    for rec in log:
        mine[rec.partition % members].append(rec)
    return [[recs[i:i + size] for i in range(0, len(recs), size)] for recs in mine]


class WriterClock:
    """CPU time spent in the store's writer threads (wraps :meth:`Worker._call`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = Worker._call
        clock = self

        def timed(worker: Worker, fn: Callable[[Any], T]) -> T:
            started = time.thread_time()
            try:
                return original(worker, fn)
            finally:
                clock.seconds += time.thread_time() - started

        Worker._call = timed  # type: ignore[method-assign]


async def sharded_round(log: Sequence[ConsumerRecord[bytes, bytes]], members: int, size: int,
                        clock: WriterClock) -> tuple[dict[str, float], str]:
    """``--members Ns``: a file per partition while folding, merged into one at the end; the
    CPU per stage, and the :func:`digest` of the copy."""
    cpu: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="parley-stages-") as tmp:
        stores = {p: SqliteStore(Path(tmp) / f"part-{p}.db") for p in range(PARTITIONS)}
        for store in stores.values():
            await store.open()
            await store.create_projection("v1")
        folders = {p: Folder(stores[p], cache_size=200_000, fresh=True) for p in stores}
        clock.seconds = 0.0
        try:
            for batch in (b for member in batches(log, members, size) for b in member):
                for p in sorted({rec.partition for rec in batch}):
                    started = time.thread_time()
                    with gc_paused():
                        result = await folders[p].fold("v1", [r for r in batch if r.partition == p])
                        folded = time.thread_time()
                        await stores[p].commit("v1", result.rows, result.offsets)
                        cpu["commit (caller)"] += time.thread_time() - folded
                        folders[p].remember(result.states, result.covers)
                        del result
                    cpu["fold"] += folded - started
                    gc.freeze()
            cpu["writer thread"] = clock.seconds
            gc.unfreeze()
        finally:
            for store in stores.values():
                await store.close()
        files = [Path(tmp) / f"part-{p}.db" for p in stores]
        main = SqliteStore(Path(tmp) / "state.db", shared=True)
        await main.open()
        try:
            await main.create_projection("v1")
            started, writer = time.thread_time(), clock.seconds
            await main._w().run(lambda conn: copy_unshared(conn, files))
            for path in files:  # visitors and agents: joined, as the shared writer does
                await main.commit("v1", shared_rows_of(path), {})
            cpu["merge"] = time.thread_time() - started + clock.seconds - writer
        finally:
            await main.close()
        return cpu, digest(Path(tmp) / "state.db")


def digest(path: Path) -> str:
    """The copy ``v1``'s rows, hashed: every layout must write the same copy."""
    conn = sqlite3.connect(path)
    try:
        h = hashlib.sha256()
        for row in conn.execute('SELECT kind, id, state, view FROM "p_v1_rows" ORDER BY kind, id'):
            h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


_MERGED = tuple(sorted(MERGED_KINDS))
_MERGED_MARKS = ", ".join("?" * len(_MERGED))


def copy_unshared(conn: sqlite3.Connection, files: Sequence[Path]) -> None:
    """Copy each file's copy ``v1`` but its visitors and agents into ``conn``'s, one
    transaction per file."""
    for path in files:
        conn.execute("ATTACH DATABASE ? AS part", (str(path),))
        conn.execute("BEGIN IMMEDIATE")
        for table, where, params in (("rows", f"kind NOT IN ({_MERGED_MARKS})", _MERGED),
                                     ("facts", "true", ()),
                                     ("rollups", "true ON CONFLICT DO NOTHING", ()),
                                     ("offsets", "true", ())):
            conn.execute(f'INSERT INTO main."p_v1_{table}" SELECT * '  # noqa: S608
                         f'FROM part."p_v1_{table}" WHERE {where}', params)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE part")


def shared_rows_of(path: Path) -> list[Row]:
    conn = sqlite3.connect(path)
    try:
        return [Row(kind=k, id=i, state=s, view=v, chat_id=c, status=st, source=so, agent_id=a,
                    sort_key=sk)
                for k, i, s, v, c, st, so, a, sk in conn.execute(
                    f'SELECT * FROM "p_v1_rows" WHERE kind IN ({_MERGED_MARKS})', _MERGED)]  # noqa: S608
    finally:
        conn.close()


async def one_round(log: Sequence[ConsumerRecord[bytes, bytes]], members: int, size: int,
                    clock: WriterClock) -> tuple[dict[str, float], str]:
    cpu: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="parley-stages-") as tmp:
        store = SqliteStore(Path(tmp) / "state.db", shared=members > 1)
        await store.open()
        try:
            await store.create_projection("v1")
            folders = [Folder(store, cache_size=200_000, fresh=True) for _ in range(members)]
            plan = batches(log, members, size)
            clock.seconds = 0.0
            # Members take turns batch by batch, as two workers' commits arrive at the writer.
            for turn in range(max(len(p) for p in plan)):
                for member, folder in enumerate(folders):
                    if turn >= len(plan[member]):
                        continue
                    batch = plan[member][turn]
                    started = time.thread_time()
                    with gc_paused():
                        result = await folder.fold("v1", batch)
                        folded = time.thread_time()
                        rows, offsets = result.rows, result.offsets
                        if members > 1:
                            data = rebuild_pipe._encode(rebuild_pipe._Commit(
                                "v1", rows, [(t, p, o) for (t, p), o in offsets.items()], False))
                            encoded = time.thread_time()
                            request = rebuild_pipe._requests.decode(data)
                            assert isinstance(request, rebuild_pipe._Commit)
                            rows = request.rows
                            offsets = {(t, p): o for t, p, o in request.offsets}
                            decoded = time.thread_time()
                            cpu["pipe encode"] += encoded - folded
                            cpu["pipe decode"] += decoded - encoded
                            folded = decoded
                        await store.commit("v1", rows, offsets)
                        committed = time.thread_time()
                        folder.remember(result.states, result.covers)
                        del result, rows
                    cpu["fold"] += folded - started
                    cpu["commit (caller)"] += committed - folded
                    gc.freeze()
            cpu["writer thread"] = clock.seconds
            gc.unfreeze()
        finally:
            await store.close()
        return cpu, digest(Path(tmp) / "state.db")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--members", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log = records(args.records, args.seed)
    clock = WriterClock()
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    digests: dict[str, str] = {}
    for n in range(args.rounds):
        for members in args.members.split(","):
            load = os.getloadavg()[0]
            layout = sharded_round if members.endswith("s") else one_round
            cpu, digests[members] = asyncio.run(
                layout(log, int(members.rstrip("s")), args.batch, clock))
            runs[members].append(cpu)
            total = sum(cpu.values())
            print(f"round {n + 1}, {members} member(s) (load {load:.2f}): "
                  f"{total / args.records * 1e6:.1f} µs/record: "
                  + ", ".join(f"{k} {v / args.records * 1e6:.1f}" for k, v in cpu.items()),
                  flush=True)
    print(f"\nCPU µs per record, best round of {args.rounds} per stage ({args.records:,} records, "
          f"batches of {args.batch:,}, load {os.getloadavg()[0]:.2f} at the end)")
    for members, rounds in runs.items():
        best = {k: min(r[k] for r in rounds) for k in rounds[0]}
        parts = ", ".join(f"{k} {v / args.records * 1e6:.1f}" for k, v in best.items())
        print(f"  {members} member(s): {sum(best.values()) / args.records * 1e6:.1f} = {parts}")
    if len(set(digests.values())) > 1:
        print(f"the layouts wrote different copies (row digests): {digests}", file=sys.stderr)
        return 1
    print(f"every layout wrote the same rows ({', '.join(digests)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
