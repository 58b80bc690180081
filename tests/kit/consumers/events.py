"""Natterly webhook bodies and envelopes for consumer tests (via contracts.ingest, as the
receiver would store them), and a fast batched producer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from contracts.envelope import Envelope, encode_envelope
from contracts.ingest import parse_webhook
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _ts(at: datetime) -> int:
    return int(at.timestamp())


def chat_body(event: str, chat_id: str, *, at: datetime = T0, subject: str | None = None,
              visitor: dict[str, Any] | None = None, agent: dict[str, Any] | None = None,
              department: str | None = None, site: str | None = None,
              messages: Sequence[dict[str, Any]] = (), rating: Any = None,
              status: str | None = None, seq: int = 0) -> bytes:
    chat: dict[str, Any] = {"uuid": chat_id, "initiated_at": _ts(T0)}
    if subject is not None:
        chat["subject"] = subject
    if visitor is not None:
        chat["visitor"] = visitor
    if agent is not None:
        chat["user"] = agent
    if department is not None:
        chat["department"] = {"uuid": f"d-{department}", "name": department}
    if site is not None:
        chat["site"] = {"uuid": f"s-{site}", "name": site}
    if rating is not None:
        chat["rating"] = rating
    if status is not None:
        chat["status"] = status
    if event == "ChatClosed":
        chat["closed_at"] = _ts(at)
    payload: dict[str, Any] = {"chat": chat, "messages": list(messages)}
    if agent is not None:
        payload["user"] = agent
    # ``seq`` makes otherwise identical bodies distinct events (Natterly ids derive from bodies).
    return orjson.dumps({"event": event, "timestamp": _ts(at) + seq, "payload": payload,
                         "auth_token": "tok"})


def message(mid: str, text: str, *, by_visitor: bool = True, name: str = "Vera",
            at: datetime = T0) -> dict[str, Any]:
    return {"uuid": mid, "text": text, "posted_by_visitor": by_visitor, "created_at": _ts(at),
            "author": {"type": "visitor" if by_visitor else "user", "name": name}}


def envelope(body: bytes, *, received_at: datetime | None = None) -> Envelope:
    return parse_webhook("natterly", "acme", body, received_at=received_at or T0)


def chat_event(chat_id: str, seq: int, *, at: datetime | None = None) -> Envelope:
    """A small distinct chat event (``seq`` orders a chat's events)."""
    when = at or T0 + timedelta(seconds=seq)
    return envelope(chat_body("ChatAssigned", chat_id, at=when, seq=seq,
                              agent={"uuid": f"a{seq % 7}", "name": f"Agent {seq % 7}"}),
                    received_at=when)


async def produce(k: KafkaSettings, topics: Topics, envs: Iterable[Envelope | tuple[str, bytes]],
                  ) -> list[tuple[str, int, int]]:
    """Produce envelopes (or raw ``(key, value)`` chat records) quickly: one producer, sends
    pipelined, awaited together. Returns (topic, partition, offset) per record in order."""
    producer = make_producer(k, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for env in envs:
            if isinstance(env, Envelope):
                futures.append(await producer.send(topics.for_aggregate(env.aggregate),
                                                   encode_envelope(env), key=env.record_key))
            else:
                futures.append(await producer.send(topics.chat, env[1], key=env[0].encode()))
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]
