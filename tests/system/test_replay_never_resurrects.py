"""Issue 20, point 4: replay never resurrects a forgotten visitor.

A real Parley (the roles of ``parley run``, sealing on, a SQLite store and key store) takes a
Natterly webhook full of personal data, forgets the visitor over HTTP, stops; then the
projection is rebuilt from the log and the search group is reset to the beginning and run
again. Every topic (raw records: keys, values, headers), the store, the key store, the
search index (their files, WAL included) and the captured logs are scanned for the visitor's
name, email, IP address and message text: none readable anywhere. That includes every value
of the compacted state topics, the superseded ones too: the projector sealed their personal
parts under the subject's keys (docs/privacy.md), which the forget destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from consumers.groups import reset_group
from consumers.search.backends import search_db_path
from consumers.search.consumer import search_consumer
from consumers.search.index import SqliteSearchIndex
from consumers.search.queries import SearchQuery
from contracts.topics import Topics
from parley.kafka.clients import make_admin, make_consumer
from parley.privacy.config import build_key_ring
from parley.process import assemble
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.rebuild import rebuild
from projector.stores import open_store
from tests.kit.consumers.helpers import running
from tests.kit.run_roles import quick_run_roles

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WEBHOOK = (Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly"
           / "chat_initiated_identified_visitor.json")
TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the fixture's own auth_token
API_TOKEN = "api-token-5c0f9e2b7a41d386"
CHAT = "5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"
VISITOR = "c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
#: The visitor's name, email, IP address and message text, as the webhook gives them.
PERSONAL = ("Priya Patel", "priya@example.org", "81.2.69.160", "where is my order")


def settings_for(tmp_path: Path, kafka: KafkaSettings) -> Settings:
    return Settings(kafka=kafka, data_dir=str(tmp_path / "data"),
                    http=HttpSettings(api_tokens=(API_TOKEN,)),
                    store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                    sources={"acme": SourceSettings(provider="natterly", auth_tokens=(TOKEN,))})


def readable(data: bytes) -> list[str]:
    """The personal strings ``data`` holds as text (UTF-8, or JSON-escaped)."""
    return [s for s in PERSONAL if s.encode() in data]


async def all_records(kafka: KafkaSettings, prefix: str
                      ) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of every topic under ``prefix``, in order per partition: its key, and its
    value and headers as one byte string."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
    finally:
        await admin.close()
    reader = make_consumer(kafka, group_id=None, enable_auto_commit=False)
    await reader.start()
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(await _partitions(reader, t))]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        async with asyncio.timeout(60):
            while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                for tp, recs in (await reader.getmany(timeout_ms=200)).items():
                    for r in recs:
                        out.setdefault(tp.topic, []).append((r.key or b"", b"|".join(
                            [r.value or b"", *(n.encode() + b"=" + v for n, v in r.headers)])))
    finally:
        await reader.stop()
    return out


async def _partitions(reader: Any, topic: str) -> set[int]:
    found: set[int] | None = reader.partitions_for_topic(topic)
    if not found:
        await reader._client.force_metadata_update()
        found = reader.partitions_for_topic(topic)
    return found or set()


@contextlib.asynccontextmanager
async def parley_run(settings: Settings, unique: str) -> AsyncIterator[TestClient[Any, Any]]:
    rt = Runtime.from_settings(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(assemble(
        rt, quick_run_roles(rt, unique, wait_s=5, recheck_s=0.1))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def until(what: str, check: Any, timeout_s: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (answer := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)
    return answer


async def test_a_forgotten_visitor_stays_forgotten_through_rebuild_and_reset(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(tmp_path, kafka_settings)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with parley_run(settings, unique) as client:
        async def get(path: str) -> Any:
            async with client.get(path, headers=auth) as resp:
                return await resp.json() if resp.status == 200 else None

        async with client.post("/webhooks/acme", data=WEBHOOK.read_bytes(),
                               headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 200, await resp.text()
        chat = await until("the chat", lambda: get(f"/api/chats/{CHAT}"))
        assert chat["visitor"]["name"] == "Priya Patel"  # sealed in Kafka, readable here
        await until("search", lambda: _hits(get, "order"))
        async with client.delete(f"/api/visitors/{VISITOR}", headers=auth) as resp:
            assert resp.status == 202, await resp.text()
            # The chat's (its records' and states') and the visitor's (its states').
            assert (await resp.json())["keys_destroyed"] == 2

        async def erased() -> bool:
            c, v = await get(f"/api/chats/{CHAT}"), await get(f"/api/visitors/{VISITOR}")
            return bool(c and c["erasure"] and v and v["erasure"])

        await until("the projection erased", erased)
        await until("search dropped the chat", lambda: _no_hits(get, "order"))
        await until("the erased state consumed by search", lambda: _no_hits(get, "Sales"))

    # Replay: rebuild the projection from the log (a fresh process: an empty key cache).
    store = open_store(settings.store.url)
    await store.open()
    ring = build_key_ring(settings)
    try:
        report = await rebuild(store, kafka_settings, topics, out=io.StringIO(), ring=ring)
        assert report.verification is not None
        assert report.verification.differ == 0, report.verification  # live erased == rebuilt
        live = await store.live_projection()
        assert live == report.name
        for kind, id in (("chat", CHAT), ("visitor", VISITOR)):
            view = await store.get_view(live, kind, id)
            assert view is not None and b'"erasure":{' in view and readable(view) == []
    finally:
        await ring.close()
        await store.close()

    # Reset the search group to the beginning and let it consume everything again.
    group = topics.group_id("search")
    await reset_group(kafka_settings, group, [topics.state("chat")], "earliest")
    index = SqliteSearchIndex(search_db_path(settings.data_dir))
    async with running(search_consumer(index), kafka_settings, topics):
        await until("the search group caught up",
                    lambda: _caught_up(kafka_settings, group, topics.state("chat")))
        for q in ("order", "Priya", "Patel"):
            assert (await index.search(SearchQuery(q=q))).hits == [], q

    # Nothing readable anywhere: event, state, ledger, dead-letter and replay topics, whole,
    # every value (the state topics' superseded values too, before any compaction).
    found: dict[str, list[str]] = {}
    records = await all_records(kafka_settings, topics.prefix)
    assert records[topics.state("chat")]  # the scan sees the states the projector published
    for topic, values in records.items():
        hits = sorted({s for key, value in values for s in readable(key + value)})
        if hits:
            found[f"topic {topic}"] = hits
    for name, data in await asyncio.to_thread(_files, tmp_path):
        if hits := readable(data):
            found[f"file {name}"] = hits
    logs = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records).encode()
    if hits := readable(logs):
        found["logs"] = hits
    assert found == {}


def _files(root: Path) -> list[tuple[str, bytes]]:
    """Every file under ``root`` (the store, key store, search index, their WALs), whole."""
    return [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()]


async def _hits(get: Any, q: str) -> bool:
    page = await get(f"/api/search?q={q}")
    return bool(page and page["hits"])


async def _no_hits(get: Any, q: str) -> bool:
    page = await get(f"/api/search?q={q}")
    return page is not None and page["hits"] == []


async def _caught_up(kafka: KafkaSettings, group: str, topic: str) -> bool:
    """Whether ``group`` committed the end of every partition of ``topic``."""
    c = make_consumer(kafka, group_id=group)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(c, topic)]
        ends = await c.end_offsets(tps)
        committed = [await c.committed(tp) or 0 for tp in tps]
        return all(done >= ends[tp] for done, tp in zip(committed, tps, strict=True))
    finally:
        await c.stop()
