"""The CRM consumer keeps agent-only notes out of transcripts, through edits (unless
``internal_notes = true``). It reads the projector's chat and message states, so the story is
folded by the real fold and delivered as the state changes the projector publishes. The CRM is
a recording double: a third party's HTTP API is the one thing we cannot run; its own HTTP
behaviour is tested against the stand-in elsewhere."""

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
from contracts.domain import DomainEvent
from contracts.ingest import parse_webhook
from contracts.normalise import normalise
from tests.kit.consumers.published import published_values

CONV = "65f0c0ffee0000000000c0de"


class Recording:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def post(self, path: str, doc: dict[str, Any], idempotency_key: str) -> None:
        self.posts.append((path, doc))


def webhook(offset: int, body: dict[str, Any]) -> list[DomainEvent]:
    env = parse_webhook("chatshipper", "shop", json.dumps(body).encode(),
                        received_at=datetime(2026, 3, 1, 9, 5, offset, tzinfo=UTC))
    return normalise(env)


def as_states(events: list[DomainEvent]) -> list[ConsumedEvent]:
    """The state-topic records the projector publishes after folding ``events`` one by one."""
    values, _ = published_values(events, cuts=range(1, len(events)))
    return [ConsumedEvent.of(topic="parley.state.chat", partition=0, offset=n, key=None, value=v)
            for n, v in enumerate(values)]


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
    return as_states([*webhook(0, message("message.create.contact.chat", 0, hello)),
                      *webhook(1, message("message.create.agent.chat", 1, note)),
                      *webhook(2, message("message.update", 2, edited)),
                      *webhook(3, closed)])


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
    # One activity per chat, re-sent as its state changes: the last one is the CRM's copy, and
    # no version ever showed a note that should stay agent-only.
    transcripts = [doc["transcript"] for path, doc in client.posts if path == "/activities"]
    assert transcripts and "hello" in transcripts[-1]
    assert not any("walrus" in t for t in transcripts[-1:])  # the edit replaced it
    assert ("narwhal" in transcripts[-1]) is shown
    assert shown or not any("narwhal" in t or "walrus" in t for t in transcripts)
