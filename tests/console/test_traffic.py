"""The overview's webhooks per source (parley/console/source_counts.py, overview.py) count
every receiver: two receivers, each a Parley of its own (its own runtime and counters, as two
pods), and a console in a third that runs no receiver (as a ``parley projector`` pod)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from contracts.topics import Topics
from parley.console.kafka_view import KafkaView
from parley.console.source_counts import SourceCounts
from parley.kafka.clients import make_producer
from parley.process import assemble
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.role import ProjectorRole
from receiver.role import ReceiverRole
from tests.console.test_session import TOKEN, csrf_of
from tests.kit.live_projector import T0, eventually, natterly_body
from tests.kit.live_projector import TOKEN as NATTERLY_TOKEN

pytestmark = pytest.mark.kafka


def _settings(kafka: KafkaSettings, tmp_path: Path, name: str) -> Settings:
    source = SourceSettings(provider="natterly", auth_tokens=(NATTERLY_TOKEN,))
    return Settings(kafka=kafka, data_dir=str(tmp_path / name),
                    store=StoreSettings(url=f"sqlite:///{tmp_path / name}.db"),
                    http=HttpSettings(api_tokens=(TOKEN,)),
                    sources={"acme": source, "shop": source})


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    started: list[TestServer] = []
    yield started
    for server in started:
        await server.close()


async def _serve(servers: list[TestServer], rt: Runtime, role: object) -> str:
    server = TestServer(assemble(rt, [role]))  # type: ignore[list-item]
    await server.start_server()
    servers.append(server)
    return str(server.make_url("")).rstrip("/")


async def test_the_overview_counts_the_webhooks_of_receivers_in_other_processes(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path,
        servers: list[TestServer]) -> None:
    receivers = []
    for name in ("rx1", "rx2"):
        rt = Runtime.from_settings(_settings(kafka_settings, tmp_path, name))
        receivers.append(await _serve(servers, rt, ReceiverRole(rt)))
    console_rt = Runtime.from_settings(_settings(kafka_settings, tmp_path, "console"))
    console = await _serve(servers, console_rt, ProjectorRole(console_rt))
    wrong = orjson.loads(natterly_body("ChatInitiated", "tr-wrong", T0))
    wrong["auth_token"] = "guessed-natterly-token-0c4e2a"
    async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as http:
        sent = [(receivers[0], "acme", 3), (receivers[1], "acme", 1), (receivers[1], "shop", 2)]
        for base, source, n in sent:
            for i in range(n):
                body = natterly_body("ChatInitiated", f"tr-{source}-{base[-5:]}-{i}", T0)
                async with http.post(f"{base}/webhooks/{source}", data=body) as resp:
                    assert resp.status in (200, 202), await resp.text()
        for base in receivers:
            async with http.post(f"{base}/webhooks/shop", data=orjson.dumps(wrong)) as resp:
                assert resp.status == 401
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{console}/console/login") as resp:
            csrf = csrf_of(await resp.text())
        async with http.post(f"{console}/console/login", data={
                "token": TOKEN, "csrf": csrf, "next": "/console"}) as resp:
            assert resp.status == 200
        seen: dict[str, tuple[str, str]] = {}

        async def counted() -> bool:
            async with http.get(f"{console}/console/panels/traffic") as resp:
                html = await resp.text()
            for row in re.findall(r'<tr data-source="([^"]+)">(.*?)</tr>', html, re.S):
                accepted = re.search(r"data-accepted>(\d+)<", row[1])
                rejected = re.search(r'data-rejected="401">401: (\d+)<', row[1])
                seen[row[0]] = (accepted.group(1) if accepted else "",
                                rejected.group(1) if rejected else "0")
            return seen == {"acme": ("4", "0"), "shop": ("2", "2")}

        await eventually(counted, "the console counting both receivers' webhooks",
                         timeout_s=20)


async def test_the_hour_is_counted_over_refreshes_within_a_budget_each_record_once(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    now_ms = int(time.time() * 1000)
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        records = [(topics.chat, "acme", now_ms - 7_200_000),  # before the hour: not counted
                   *((topics.chat, "acme", now_ms - 60_000 * i) for i in range(5)),
                   *((topics.agent, "shop", now_ms - 1000 * i) for i in range(3))]
        for i, (topic, source, at) in enumerate(records):
            await producer.send_and_wait(topic, orjson.dumps({"source": source}),
                                         key=f"k{i}".encode(), timestamp_ms=at)
        await producer.send_and_wait(topics.other, b"not an envelope", key=b"x")
    finally:
        await producer.stop()
    view = KafkaView(kafka_settings, topics.prefix, [])
    counts = SourceCounts(budget=2)
    try:
        seen = [await counts.refresh(view, topics.event_topics) for _ in range(8)]
    finally:
        await view.close()
    assert not seen[0].complete and sum(seen[0].per_source.values()) <= 2
    assert seen[-1].complete and seen[-1].per_source == {"acme": 5, "shop": 3}
    # Refreshes with nothing new count nothing again.
    assert seen[-2].per_source == seen[-1].per_source
