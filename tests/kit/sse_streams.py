"""Live subscriptions' test kit: the projector role served over HTTP on a real broker, a Server-
Sent Events reader, and the chat state topic read as another process would (opened with the
test's keys, or raw)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import crc32

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from aiokafka import TopicPartition

from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.privacy.config import build_key_ring
from parley.privacy.seal import subject_in
from parley.privacy.states import open_state
from parley.settings import HttpSettings, KafkaSettings, Settings, StoreSettings
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from projector.sse import SseOptions
from projector.streams import StreamOptions
from tests.kit.live_projector import eventually
from tests.kit.projector_api import serving_role
from tests.kit.receiver_app import privacy_for_test

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly"
TOKEN = "stream-token-5d1e9a7c3b8f2046"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_STREAMS = 2
BUFFER_EVENTS = 2


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


class Sse:
    """Reads one event stream: events in order, comments counted."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout_s: float = 30.0) -> Event:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.response.content.readline()).decode()
                assert line, f"stream ended; fields so far {fields}"
                line = line.rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields:
                    return Event(fields.get("id", ""), fields["event"], orjson.loads(fields["data"]))

    async def opened(self) -> None:
        """Wait for the ``: open`` comment: from here on, every change is seen."""
        async with asyncio.timeout(30):
            line = await self.response.content.readline()
        assert line == b": open\n", line


@contextlib.asynccontextmanager
async def serving(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path,
                  unique: str) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    """The projector role (runner, state publisher, streams) served over HTTP with a token,
    at most :data:`MAX_STREAMS` streams, short heartbeats and small buffers; states sealed."""
    settings = Settings(kafka=kafka_settings, data_dir=str(tmp_path),
                        privacy=privacy_for_test(kafka_settings),  # states sealed, the default
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                        http=HttpSettings(api_tokens=(TOKEN,), max_streams=MAX_STREAMS))
    async with serving_role(settings, ProjectorRoleOptions(
            runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100),
            streams=StreamOptions(poll_ms=100, sse=SseOptions(
                heartbeat_s=0.3, buffer_events=BUFFER_EVENTS, stall_timeout_s=0.5,
                send_buffer_bytes=4096, final_write_timeout_s=0.5))), topics) as served:
        yield served


async def subscribe(client: TestClient[Any, Any], path: str, **headers: str) -> Sse:
    resp = await client.get(path, headers=AUTH | headers)
    assert resp.status == 200, (resp.status, await resp.text())
    assert resp.content_type == "text/event-stream"
    sse = Sse(resp)
    await sse.opened()
    return sse


async def chat_records(kafka: KafkaSettings, topics: Topics, chat: str, *, raw: bool = False
                       ) -> list[tuple[str, dict[str, Any]]]:
    """Every record of ``chat`` (and its messages) on the chat state topic: (position, value),
    the value opened with the test's keys as another process would (``raw``: as stored)."""
    return [(p, orjson.loads(v)) for p, v in await chat_values(kafka, topics, chat, raw=raw)]


async def chat_values(kafka: KafkaSettings, topics: Topics, chat: str, *, raw: bool = False
                      ) -> list[tuple[str, bytes]]:
    """:func:`chat_records`, the values as bytes."""
    values = await _chat_values(kafka, topics, chat)
    if raw:
        return values
    ring = build_key_ring(Settings(kafka=kafka, privacy=privacy_for_test(kafka)))
    try:
        await ring.load(s for _, v in values if (s := subject_in(v)) is not None)
        return [(p, open_state(ring, v)) for p, v in values]
    finally:
        await ring.close()


async def _chat_values(kafka: KafkaSettings, topics: Topics, chat: str
                       ) -> list[tuple[str, bytes]]:
    topic = topics.state("chat")
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, crc32(chat.encode()) % kafka.partitions)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        out = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += [(f"{topic}:{r.partition}:{r.offset}", r.value or b"")
                        for r in records
                        if r.key == chat.encode() or (r.key or b"").startswith(f"{chat}/".encode())]
        return out
    finally:
        await consumer.stop()


async def until_published(kafka: KafkaSettings, topics: Topics, chat: str, status: str
                          ) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []

    async def published() -> bool:
        found[:] = await chat_records(kafka, topics, chat)
        return any(v["kind"] == "chat" and v["state"]["status"] == status for _, v in found)

    await eventually(published, f"chat {chat} published {status}")
    return found


async def comment(sse: Sse) -> None:
    """Read one line, kept when it is a comment (a heartbeat)."""
    line = await asyncio.wait_for(sse.response.content.readline(), 5)
    if line.startswith(b":"):
        sse.comments.append(line.decode())


async def equals(value: int, expected: int) -> bool:
    """For :func:`~tests.kit.live_projector.eventually`: ``value == expected``."""
    return value == expected
