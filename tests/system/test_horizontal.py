"""Horizontal scale: several projector processes share the event topics through one consumer
group and write one PostgreSQL store; two receiver processes take the webhooks.

The real commands run as subprocesses (``python -m parley.cli projector|receiver --config …``)
on the real broker and a real PostgreSQL. The load generator posts each webhook to the two
receivers in turn (a client-side load balancer) while projectors join, crash and leave:

* two projectors start; a third joins during ingest (a rebalance);
* the first is SIGKILLed mid-ingest (its partitions move once its session expires);
* a fourth joins and the second leaves with SIGTERM (two more rebalances).

Visitors are shared by chats in different partitions, so their rows are written by several
projectors at once. At the end, the store must hold exactly what a clean rebuild of the log
(into a fresh SQLite store) holds: nothing lost, nothing counted twice, every merge right.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from contracts.topics import Topics
from parley.kafka.launcher import free_ports
from parley.settings import KafkaSettings
from projector.postgres_store import PostgresStore
from projector.stores import open_store
from tests.kit.live_projector import (
    TOKEN,
    applied,
    delete_dlq,
    eventually,
    rebuilt_snapshot,
    snapshot,
    write_config,
)
from tests.kit.processes import Load, ParleyProcess, processes, workload

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHATS = 90
RATE = 40  # webhooks/s: each phase lasts a few seconds


async def test_three_projectors_two_receivers_rebalancing_equal_a_clean_rebuild(
        kafka_settings: KafkaSettings, topics: Topics, pg_url: str, unique: str,
        tmp_path: Path) -> None:
    hooks = list(enumerate(workload(CHATS, visitors=20)))
    thirds = [hooks[i * len(hooks) // 3:(i + 1) * len(hooks) // 3] for i in range(3)]
    ports = free_ports(6)
    rx_ports, px_ports = ports[:2], ports[2:]
    group = f"{unique}-projector"

    def receiver(n: int) -> ParleyProcess:
        config = write_config(tmp_path / f"receiver{n}.toml", kafka_settings,
                              f"sqlite:///{tmp_path / 'unused.db'}", port=rx_ports[n],
                              natterly_token=TOKEN)
        return ParleyProcess(f"receiver{n}", ["receiver", "--config", str(config)], rx_ports[n],
                             tmp_path)

    def projector(n: int) -> ParleyProcess:
        config = write_config(tmp_path / f"projector{n}.toml", kafka_settings, pg_url,
                              port=px_ports[n], log_level="INFO")
        # Small batches: many commits, so concurrent writes of shared visitors really happen.
        return ParleyProcess(f"projector{n}", ["projector", "--config", str(config), "--group",
                                               group, "--max-batch", "100"], px_ports[n], tmp_path)

    observer = open_store(pg_url)
    assert isinstance(observer, PostgresStore)
    load = Load(rx_ports)
    try:
        async with processes() as running:
            running += [receiver(0), receiver(1), projector(0), projector(1)]
            await asyncio.gather(*(p.start() for p in running))
            await asyncio.gather(*(p.wait_ready() for p in running))
            await observer.open()
            p0, p1 = running[2], running[3]

            # Phase 1: two projectors share the partitions.
            await load.run(thirds[0], rate_per_s=RATE)
            # Phase 2: a third joins while webhooks keep coming, then the first crashes.
            p2 = await projector(2).start()
            running.append(p2)
            phase2 = asyncio.create_task(load.run(thirds[1], rate_per_s=RATE))
            await p2.wait_ready()
            await eventually(lambda: _posted_at_least(load, len(thirds[0]) + len(thirds[1]) // 2),
                             "half of phase 2 posted", timeout_s=60)
            assert await p0.stop(signal.SIGKILL) == -signal.SIGKILL
            await phase2
            # Phase 3: a fourth joins and gets partitions, the second leaves gracefully, and
            # the last third of the webhooks comes in.
            p3 = await projector(3).start()
            running.append(p3)
            await p3.wait_ready()
            await eventually(lambda: _assigned(p3), "the fourth projector got partitions",
                             timeout_s=60, every_s=0.2)
            assert await p1.stop(signal.SIGTERM) == 0
            await load.run(thirds[2], rate_per_s=RATE)

            acked = load.acknowledged()
            if len(acked) != len(hooks):  # the receivers' logs say why (503: which cause)
                raise AssertionError("\n".join(
                    [f"{len(acked)} of {len(hooks)} acknowledged: "
                     f"{sorted({o.status for o in load.outcomes})}"]
                    + [f"--- {p.name}\n{p.log_tail()}" for p in running
                       if p.name.startswith("receiver")]))
            assert {o.port for o in acked} == set(rx_ports)  # both receivers took traffic
            positions = load.positions()
            try:
                await eventually(lambda: applied(observer, positions), "the projection caught up",
                                 timeout_s=60, every_s=0.2)
            except AssertionError:
                raise AssertionError("\n".join(f"--- {p.name}\n{p.log_tail()}" for p in running
                                               if p.name.startswith("projector"))) from None

            # The survivors shared the work, and either answers read-your-writes queries.
            for survivor in (p2, p3):
                assert await survivor.metric("parley_projector_records_total") > 0, survivor.name
            last = acked[-1]
            chat = hooks[last.index][1].chat or hooks[0][1].chat
            async with aiohttp.ClientSession() as http:
                for survivor in (p2, p3):
                    url = (f"http://127.0.0.1:{survivor.port}/api/chats/{chat}"
                           f"?min_position={last.position}")
                    async with http.get(url) as resp:
                        if resp.status != 200:
                            raise AssertionError("\n".join(
                                [f"{survivor.name}: {resp.status} {await resp.text()}"]
                                + [f"--- {p.name}\n{p.log_tail()}" for p in (p2, p3)]))
            live = await observer.live_projection()
            assert live is not None
            recovered = await snapshot(observer, live)
            for p in (p2, p3):
                assert await p.stop(signal.SIGINT) == 0
    finally:
        await observer.close()

    try:
        report, rebuilt = await rebuilt_snapshot(kafka_settings, topics,
                                                 f"sqlite:///{tmp_path / 'clean.db'}")
    finally:
        await delete_dlq(kafka_settings, topics)
    assert report.records == len(positions)
    assert recovered["counts"] == rebuilt["counts"]
    assert len(recovered["chats"]) == CHATS
    assert recovered == rebuilt
    # Every acknowledged webhook counted once: each chat has its three messages, each shared
    # visitor all of its chats (written by several projectors at once).
    assert {c["message_count"] for c in recovered["chats"]} == {3}
    visitors = recovered["visitors"]
    assert len(visitors) == 20 and all(len(v["chats"]) == CHATS // 20 or len(v["chats"]) ==
                                       CHATS // 20 + 1 for v in visitors.values())
    assert orjson.dumps(recovered) == orjson.dumps(rebuilt)


async def _posted_at_least(load: Load, n: int) -> bool:
    return len(load.outcomes) >= n


async def _assigned(p: ParleyProcess) -> bool:
    return "assigned " in p.log_tail(1_000_000)
