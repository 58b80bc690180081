"""The CRM consumer keeps agent-only notes out of transcripts, through edits (unless
``internal_notes = true``). The CRM is a recording double: a third party's HTTP API is the
one thing we cannot run; its own HTTP behaviour is tested against the stand-in elsewhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.api import ConsumedEvent
from consumers.crm.config import CrmConfig
from consumers.crm.consumer import crm_consumer
from consumers.crm.state import CrmState
from contracts.envelope import encode_envelope
from contracts.ingest import parse_webhook

CONV = "65f0c0ffee0000000000c0de"


class Recording:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def post(self, path: str, doc: dict[str, Any], idempotency_key: str) -> None:
        self.posts.append((path, doc))


def webhook(offset: int, body: dict[str, Any]) -> ConsumedEvent:
    env = parse_webhook("chatshipper", "shop", json.dumps(body).encode(),
                        received_at=datetime(2026, 3, 1, 9, 5, offset, tzinfo=UTC))
    return ConsumedEvent.of(topic="parley.events.chat", partition=0, offset=offset, key=env.key,
                            value=encode_envelope(env))


def story() -> list[ConsumedEvent]:
    note = {"id": "m-note", "conversation": CONV, "type": "chat", "role": "agent",
            "text": "customer is a walrus", "isBackchannel": True,
            "createdAt": "2026-03-01T09:01:00Z"}
    edited = {**note, "text": "customer is a narwhal", "updatedAt": "2026-03-01T09:02:00Z"}
    del edited["isBackchannel"]
    hello = {"id": "m-hi", "conversation": CONV, "type": "chat", "role": "contact", "text": "hello",
             "createdAt": "2026-03-01T09:00:00Z"}

    def message(event: str, n: int, msg: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"w-{n}", "event": event, "timestamp": "2026-03-01T09:03:00Z",
                "data": {"conversation": {"id": CONV}, "message": msg}}

    closed = {"id": "w-9", "event": "conversation.update", "timestamp": "2026-03-01T09:10:00Z",
              "data": {"conversation": {"id": CONV, "status": "closed",
                                        "updatedAt": "2026-03-01T09:10:00Z"}}}
    return [webhook(0, message("message.create.contact.chat", 0, hello)),
            webhook(1, message("message.create.agent.chat", 1, note)),
            webhook(2, message("message.update", 2, edited)),
            webhook(3, closed)]


@pytest.mark.parametrize(("internal_notes", "shown"), [(False, False), (True, True)])
async def test_transcript_leaves_out_edited_agent_notes_unless_configured(
        tmp_path: Path, internal_notes: bool, shown: bool) -> None:
    client = Recording()
    consumer = crm_consumer(CrmConfig(base_url="http://crm.invalid", internal_notes=internal_notes),
                            CrmState(tmp_path / "crm.db"), client)
    assert consumer.start is not None and consumer.stop is not None and consumer.handle is not None
    await consumer.start()
    try:
        for event in story():
            await consumer.handle(event)
    finally:
        await consumer.stop()
    (transcript,) = [doc["transcript"] for path, doc in client.posts if path == "/activities"]
    assert "hello" in transcript
    assert "walrus" not in transcript  # the edit replaced it
    assert ("narwhal" in transcript) is shown
