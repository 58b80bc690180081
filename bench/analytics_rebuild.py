"""``parley projections rebuild analytics`` against a full ``parley projections rebuild``, on
one generated log (issue 22 point 2).

Fills a throwaway Kafka (or ``$PARLEY_BENCH_KAFKA``) with ``--events`` generated webhooks
(``bench/replay_data.py``, as ``bench/replay.py`` does), then per round, in this process:

1. ``full``: ``projector.rebuild.rebuild`` of the whole log into a fresh SQLite store (the
   copy ``v1``, made live);
2. ``analytics``: ``projector.analytics_rebuild.rebuild_analytics`` of that store's live
   copy — what ``parley projections rebuild analytics`` runs, after a definition changed
   (here: every chat's wait counted 1 s longer, so every fact, tally and chat view moves).

Prints each round (seconds, CPU-seconds of the process, load average before it) and the
medians, and the ratio of the two. Only 127.0.0.1.

    .venv/bin/python bench/analytics_rebuild.py [--events 200000] [--rounds 3]
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
import io  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402
from unittest import mock  # noqa: E402

import msgspec  # noqa: E402
from replay import _cpu, _parley, delete_topics, fill  # noqa: E402

from contracts.topics import Topics  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402


async def _analytics(work: Path) -> dict[str, Any]:
    from projector import analytics, views
    from projector.analytics_rebuild import rebuild_analytics
    from projector.sqlite_store import SqliteStore

    real = analytics.chat_metrics

    def longer(s: Any, closed_at: Any) -> Any:
        m = real(s, closed_at)
        return msgspec.structs.replace(m, wait_s=None if m.wait_s is None else m.wait_s + 1)

    store = SqliteStore(work / "state.db")
    await store.open()
    try:
        with mock.patch.object(views, "chat_metrics", longer):
            started, cpu = time.perf_counter(), _cpu()
            report = await rebuild_analytics(store, out=io.StringIO())
            seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    finally:
        await store.close()
    return {"walked": report.walked, "seconds": seconds, "cpu_seconds": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    prefix = f"analytics{uuid.uuid4().hex[:8]}"
    shared = os.environ.get("PARLEY_BENCH_KAFKA")
    if not shared:
        with throwaway_kafka("parley-bench-kafka-", heap_mb=1024) as kafka:
            return _bench(args, kafka.bootstrap, prefix)
    try:
        return _bench(args, shared, prefix)
    finally:  # leave nothing behind on a shared broker
        delete_topics(shared, prefix)


def _bench(args: argparse.Namespace, bootstrap: str, prefix: str) -> int:
    topics = Topics(prefix=prefix)
    filled = fill(bootstrap, topics, args.events, args.partitions, "lz4", args.seed)
    print(f"filled {args.events:,} records ({filled['chats']:,} chats) in "
          f"{filled['seconds']:.1f} s", flush=True)
    os.sync()
    full: list[dict[str, Any]] = []
    only: list[dict[str, Any]] = []
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="parley-bench-analytics-") as tmp:
            work = Path(tmp)
            load = os.getloadavg()[0]
            r = asyncio.run(_parley(bootstrap, prefix, args.partitions, work))
            r["load"] = load
            full.append(r)
            print(f"round {n}: full rebuild {r['records']:,} records, {r['rows']['chat']:,} chats: "
                  f"{r['seconds']:.1f} s, {r['cpu_seconds']:.1f} CPU-s (load {load:.2f})", flush=True)
            load = os.getloadavg()[0]
            a = asyncio.run(_analytics(work))
            a["load"] = load
            only.append(a)
            print(f"round {n}: rebuild analytics {a['walked']:,} chats and agents: "
                  f"{a['seconds']:.1f} s, {a['cpu_seconds']:.1f} CPU-s (load {load:.2f})", flush=True)
    fs, fc = statistics.median(r["seconds"] for r in full), statistics.median(r["cpu_seconds"] for r in full)
    as_, ac = statistics.median(a["seconds"] for a in only), statistics.median(a["cpu_seconds"] for a in only)
    print(f"\nmedians of {args.rounds} alternating rounds: full rebuild {fs:.1f} s ({fc:.1f} CPU-s), "
          f"rebuild analytics {as_:.1f} s ({ac:.1f} CPU-s): {fs / as_:.1f}x faster "
          f"({fc / ac:.1f}x less CPU); {only[0]['walked'] / as_:,.0f} chats and agents/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
