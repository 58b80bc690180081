"""The CRM consumer and erasure: an erased chat's state deletes its activity in the CRM and
what the consumer kept of the chat; a forgotten visitor deletes its contact; ``erase =
false`` forgets locally only (docs/privacy.md). The CRM is a recording double (a third
party's API); the HTTP client's DELETE is checked against a real local server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from consumers.api import ConsumedEvent, Consumer
from consumers.crm.client import HttpCrmClient
from consumers.crm.config import CrmConfig
from consumers.crm.consumer import crm_consumer
from consumers.crm.state import CrmState
from contracts.forgotten import Forgotten, forgotten_record
from contracts.state import ChatState, Erasure, MessageState
from contracts.state_change import encode_state_change
from tests.kit.crm_standin import Recorder, Serving

AT = datetime(2026, 3, 1, 9, tzinfo=UTC)
ERASURE = Erasure(id="e1", at=AT)


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # method, path, idempotency key

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def post(self, path: str, doc: dict[str, Any], idempotency_key: str) -> None:
        self.calls.append(("POST", path, idempotency_key))

    async def erase(self, method: str, path: str, idempotency_key: str) -> None:
        self.calls.append((method, path, idempotency_key))


def state(kind: str, id: str, offset: int, view: ChatState | MessageState) -> ConsumedEvent:
    value = encode_state_change(kind, id, [("p.events.chat", 0, offset)], msgspec.json.encode(view))
    return ConsumedEvent.of(topic="p.state.chat", partition=0, offset=offset, key=id, value=value)


def closed_chat(**extra: Any) -> ChatState:
    return ChatState(id="c1", source="acme", status="closed", closed_at=AT, subject="Help", **extra)


def forgotten_visitor() -> ConsumedEvent:
    key, value, headers = forgotten_record(Forgotten(
        erasure_id="e1", subject="natterly:visitor:v 1", kind="visitor", id="v 1",
        source="acme", requested_at=AT))
    return ConsumedEvent.of(topic="p.events.visitor", partition=0, offset=9,
                            key=key.decode(), value=value, headers=headers)


async def run(consumer: Consumer, events: list[ConsumedEvent]) -> None:
    assert consumer.start is not None and consumer.stop is not None and consumer.handle is not None
    await consumer.start()
    try:
        for event in events:
            if consumer.wants(event):
                await consumer.handle(event)
    finally:
        await consumer.stop()


async def test_erasure_deletes_the_activity_and_the_contact(tmp_path: Path) -> None:
    client = Recording()
    crm_state = CrmState(tmp_path / "crm.db")
    consumer = crm_consumer(CrmConfig(base_url="http://crm.invalid"), crm_state, client)
    message = MessageState(id="m1", chat_id="c1", text="my secret", posted_at=AT)
    await run(consumer, [
        state("message", "c1/m1", 1, message), state("chat", "c1", 2, closed_chat()),
        state("chat", "c1", 3, closed_chat(erasure=ERASURE)),
        state("message", "c1/m1", 4, msgspec.structs.replace(message, text=None,
                                                             erasure=ERASURE)),
        forgotten_visitor()])
    assert [c[:2] for c in client.calls] == [
        ("POST", "/activities"), ("DELETE", "/activities/c1"), ("DELETE", "/contacts/v%201")]
    assert client.calls[1][2] == "erase:activity:c1:e1"
    assert client.calls[2][2] == "erase:contact:v 1:e1"
    kept = CrmState(tmp_path / "crm.db")
    await kept.open()
    try:
        assert await kept.closed_chat("c1") is None  # nothing kept of the chat
        assert (await kept.chat_summary("c1"))["messages"] == []
        assert await kept.visitor("v 1", name=None, email=None, source="acme") == (None, None, None)
    finally:
        await kept.close()


async def test_erase_false_forgets_locally_only(tmp_path: Path) -> None:
    client = Recording()
    consumer = crm_consumer(CrmConfig(base_url="http://crm.invalid", erase=False,
                                      erase_method="POST"), CrmState(tmp_path / "crm.db"), client)
    await run(consumer, [state("chat", "c1", 2, closed_chat()),
                         state("chat", "c1", 3, closed_chat(erasure=ERASURE)), forgotten_visitor()])
    assert [c[:2] for c in client.calls] == [("POST", "/activities")]


async def test_the_http_client_sends_the_configured_method_without_a_body() -> None:
    recorder = Recorder()
    async with Serving(recorder.app()) as server:
        client = HttpCrmClient(CrmConfig(base_url=server.url, erase_activity_path="/x/{external_id}"))
        await client.start()
        try:
            await client.erase("DELETE", "/x/c1", "erase:activity:c1:e1")
        finally:
            await client.close()
    [got] = recorder.requests
    assert (got.method, got.path, got.body, got.headers["Idempotency-Key"]) == (
        "DELETE", "/x/c1", b"", "erase:activity:c1:e1")
