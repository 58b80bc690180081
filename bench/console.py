"""Console page times with 100,000 chats in the store (issue 21: under 300 ms).

One run:

1. **Fill** a fresh SQLite store with at least ``--chats`` chats (default 100,000): generated
   webhooks of both providers (``bench/replay_data.py``, thousands of concurrent chats,
   agents changing status), folded by the projector's own ``Folder`` and committed in batches
   as a rebuild commits them — chats, messages, visitors, agents and the log index. The
   records are folded in-process (not produced to Kafka first): the pages read the store,
   and the Kafka side of a page (a timeline's records, the overview's lag) is timed against
   a broker whose topics exist but hold none of these records, which times its reads without
   making the fill minutes longer.
2. **Serve** the projector role with the console (``parley.process.assemble``), log in, and
   request each page ``--requests`` times (after one warm-up request), one at a time.

Prints, per page, the median and 95th percentile of the time to the whole answer (ms), and
how the store was filled. Uses ``$PARLEY_BENCH_KAFKA`` if set, else starts a LocalKafka on
free ports in a temporary directory (stopped and wiped after). Only 127.0.0.1.

    .venv/bin/python bench/console.py [--chats 100000] [--requests 30] [--store DIR]

``--store DIR`` keeps the filled store in DIR and reuses it on the next run (the fill takes
minutes on a busy machine).
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
import contextlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from urllib.parse import quote  # noqa: E402
from zlib import crc32  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from aiokafka.structs import ConsumerRecord  # noqa: E402
from replay_data import generate  # noqa: E402

from contracts.topics import Topics  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.process import assemble  # noqa: E402
from parley.runtime import Runtime  # noqa: E402
from parley.settings import HttpSettings, KafkaSettings, Settings, StoreSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402
from projector.folder import Folder  # noqa: E402
from projector.role import ProjectorRole  # noqa: E402
from projector.sqlite_store import SqliteStore  # noqa: E402

TOKEN = "bench-console-token-5e2a9c1f7b3d"  # noqa: S105 - a throwaway test token
PREFIX = "benchconsole"
PARTITIONS = 6
COPY = "v1"
BATCH = 5_000


def _records(topics: Topics, n_chats: int, stats: dict[str, int]
             ) -> Iterator[ConsumerRecord[bytes, bytes]]:
    """Generated records with the offsets Kafka would give them (partition by key)."""
    next_offset: dict[tuple[str, int], int] = {}
    stamp = int(time.time() * 1000) - 3_600_000
    for i, (topic, key, value) in enumerate(generate(10**9, topics, stats=stats)):
        if stats.get("chats", 0) >= n_chats:
            return
        partition = crc32(key) % PARTITIONS
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        yield ConsumerRecord(topic, partition, offset, stamp + i, 0, key, value, None,
                             len(key), len(value), [])


async def fill(path: Path, topics: Topics, n_chats: int) -> None:
    store = SqliteStore(str(path))
    await store.open()
    try:
        if COPY in await store.list_projections():
            counts = await store.counts(COPY)
            print(f"store {path}: reused, {counts}")
            return
        await store.create_projection(COPY)
        folder = Folder(store, cache_size=200_000, fresh=True)
        started = time.perf_counter()
        stats: dict[str, int] = {}
        batch: list[ConsumerRecord[bytes, bytes]] = []
        n = 0
        # A little over n_chats started: the last ones may not have their chat yet.
        for record in _records(topics, n_chats + n_chats // 20 + 2_000, stats):
            batch.append(record)
            if len(batch) == BATCH:
                n += await _commit(store, folder, batch)
                batch = []
        n += await _commit(store, folder, batch)
        await store.set_live(COPY)
        counts = await store.counts(COPY)
        print(f"store {path}: {n} records folded in {time.perf_counter() - started:.0f} s: "
              f"{counts}")
    finally:
        await store.close()


async def _commit(store: SqliteStore, folder: Folder,
                  batch: list[ConsumerRecord[bytes, bytes]]) -> int:
    if not batch:
        return 0
    result = await folder.fold(COPY, batch)
    await store.commit(COPY, result.rows, result.offsets)
    folder.remember(result.states, result.covers)
    return len(batch)


async def _time(http: aiohttp.ClientSession, url: str, n: int) -> tuple[float, float, int]:
    async with http.get(url) as resp:  # warm-up
        await resp.read()
        status = resp.status
    times = []
    for _ in range(n):
        started = time.perf_counter()
        async with http.get(url) as resp:
            await resp.read()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], status


async def serve_and_time(path: Path, kafka: KafkaSettings, requests: int) -> None:
    settings = Settings(kafka=kafka, data_dir=str(path.parent / "data"),
                        store=StoreSettings(url=f"sqlite:///{path}"),
                        http=HttpSettings(api_tokens=(TOKEN,)))
    rt = Runtime.from_settings(settings)
    await apply_topics(kafka, rt.topics.specs(PARTITIONS))
    server = TestServer(assemble(rt, [ProjectorRole(rt)]))
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/console/login") as resp:
                csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await resp.text())
            assert csrf is not None
            async with http.post(f"{base}/console/login", data={
                    "token": TOKEN, "csrf": csrf.group(1), "next": "/console"}) as resp:
                assert resp.status == 200, resp.status
            async with http.get(f"{base}/api/chats?limit=1&status=closed",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                chat = (await resp.json())["items"][0]
            async with http.get(f"{base}/api/agents",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                agent = (await resp.json())["items"][0]
            chat_id = quote(chat["id"], safe="")
            visitor_id = quote((chat.get("visitor") or {}).get("id") or "none", safe="")
            agent_id = quote(agent["id"], safe="")
            pages = [
                ("overview (all panels)", "/console"),
                ("overview: projection panel", "/console/panels/store"),
                ("overview: groups panel", "/console/panels/groups"),
                ("overview: webhooks panel", "/console/panels/traffic"),
                ("overview: rejections panel", "/console/panels/rejections"),
                ("chats, first page", "/console/chats"),
                ("chats, status=closed", "/console/chats?status=closed"),
                ("chats, limit=200", "/console/chats?limit=200"),
                ("a chat", f"/console/chats/{chat_id}"),
                ("a chat's timeline", f"/console/chats/{chat_id}/timeline"),
                ("agents", "/console/agents"),
                ("an agent", f"/console/agents/{agent_id}"),
                ("an agent's history", f"/console/agents/{agent_id}/history"),
                ("a visitor", f"/console/visitors/{visitor_id}"),
            ]
            print(f"{'page':<28} {'p50 ms':>8} {'p95 ms':>8}  status")
            for name, url in pages:
                p50, p95, status = await _time(http, base + url, requests)
                print(f"{name:<28} {p50:>8.1f} {p95:>8.1f}  {status}")
    finally:
        await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    topics = Topics(prefix=PREFIX)
    with contextlib.ExitStack() as stack:
        work = args.store or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        path = work / "state.db"
        asyncio.run(fill(path, topics, args.chats))
        bootstrap = os.environ.get("PARLEY_BENCH_KAFKA")
        if not bootstrap:
            bootstrap = stack.enter_context(throwaway_kafka("parley-bench-console-")).bootstrap
        kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=PREFIX)
        print(f"load average {os.getloadavg()[0]:.1f} (2 cores, shared)")
        asyncio.run(serve_and_time(path, kafka, args.requests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
