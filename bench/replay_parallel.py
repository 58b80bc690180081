"""The N-process contenders of ``bench/replay.py`` (issue 18): ``parley-N`` and ``quix-N``.

- ``parley-N``: ``projector.rebuild_parallel.rebuild_parallel`` with N worker processes (what
  ``parley projections rebuild --workers N`` runs) into a fresh SQLite store, timed over the
  whole call like ``parley`` (the workers' start-up, group join, last commit and the switch
  included); CPU seconds are this process's plus its workers' (``RUSAGE_CHILDREN`` once they
  were joined).
- ``quix-N``: N Quix Streams processes (``replay_rivals.run_quix``'s app) in one consumer
  group, each with its own state directory, stopping together once all of them have folded
  the whole log (a shared counter); timed from the first record any of them folded to the
  last one's return, CPU seconds summed over them from their first record, like ``quix``.
"""

from __future__ import annotations

import io
import multiprocessing
import resource
import threading
import time
from pathlib import Path
from typing import Any

from contracts.topics import Topics
from parley.settings import KafkaSettings

__all__ = ["run_parley_n", "run_quix_n"]


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_parley_n(bootstrap: str, prefix: str, partitions: int, work: Path, n: int) -> dict[str, Any]:
    from parley.loop import run

    return run(_parley_n(bootstrap, prefix, partitions, work, n), "auto")


async def _parley_n(bootstrap: str, prefix: str, partitions: int, work: Path, n: int
                    ) -> dict[str, Any]:
    from projector.rebuild_parallel import ParallelOptions, rebuild_parallel
    from projector.sqlite_store import SqliteStore

    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    url = f"sqlite:///{work / 'state.db'}"
    store = SqliteStore(work / "state.db")
    await store.open()
    try:
        started = time.perf_counter()
        cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
        report = await rebuild_parallel(
            store, ParallelOptions(workers=n, store_url=url, kafka=k, prefix=prefix),
            out=io.StringIO())
        seconds = time.perf_counter() - started
        cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu
        counts = await store.counts(report.name)
    finally:
        await store.close()
    return {"records": report.records, "seconds": seconds, "cpu_seconds": cpu,
            "dead_letters": report.dead_letters, "rows": counts, "workers": n}


def run_quix_n(bootstrap: str, prefix: str, group: str, events: int, work: Path, n: int
               ) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    folded = ctx.Value("q", 0)
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_quix_member, args=(bootstrap, prefix, group, events,
                                                    work / f"quix{i}", folded, results))
             for i in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    parts = [results.get() for _ in procs if not results.empty()]
    if len(parts) != n or any(p.get("error") for p in parts):
        raise RuntimeError(f"quix-{n}: {[p.get('error') for p in parts]} ({len(parts)} of {n})")
    first = min(p["first"] for p in parts if p["records"])
    return {"records": sum(p["records"] for p in parts),
            "events": sum(p["events"] for p in parts),
            "seconds": max(p["closed"] for p in parts) - first,
            "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
            "store_bytes": sum(p["store_bytes"] for p in parts), "workers": n}


def _quix_member(bootstrap: str, prefix: str, group: str, events: int, work: Path,
                 folded: Any, results: Any) -> None:
    """One Quix process of ``quix-N``: its share of the partitions, until all N are done."""
    import logging

    from quixstreams import Application, State
    from replay_rivals import fold_record

    logging.basicConfig(level=logging.WARNING)
    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", state_dir=work / "state", loglevel="WARNING")
    mine = {"records": 0, "events": 0, "first": 0.0, "cpu_first": 0.0}
    done = threading.Event()

    def fold(value: bytes, state: State) -> None:
        if not mine["records"]:
            mine["first"], mine["cpu_first"] = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        mine["records"] += 1
        mine["events"] += fold_record(value, state.get_bytes, state.set_bytes)
        with folded.get_lock():
            folded.value += 1

    def watch() -> None:  # every member stops once the group folded the whole log
        while not done.wait(0.05):
            if folded.value >= events:
                app.stop()
                return

    for name in Topics(prefix=prefix).event_topics:
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(topic).update(fold, stateful=True)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        app.run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    finally:
        done.set()
    size = sum(p.stat().st_size for p in (work / "state").rglob("*") if p.is_file()) \
        if (work / "state").exists() else 0
    results.put({"records": mine["records"], "events": mine["events"], "first": mine["first"],
                 "closed": time.perf_counter(),
                 "cpu_seconds": _cpu(resource.RUSAGE_SELF) - mine["cpu_first"],
                 "store_bytes": size})
