"""Chat state-topic records (what the projector publishes for a chat and its messages), and a
producer for them: the search consumer's input, without running the projector."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contracts.state_change import decode_state_change
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings
from tests.kit.consumers.domain_events import chat_events
from tests.kit.consumers.published import published_values


def chat_states(cid: str, subject: str, texts: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of the chat's and its messages' states, keyed by the chat's id."""
    values, _ = published_values(chat_events(cid, subject=subject, texts=list(texts)), [])
    return [(cid.encode(), value) for value in values
            if decode_state_change(value).kind in ("chat", "message")]


async def produce_states(k: KafkaSettings, topics: Topics,
                         records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send ``records`` to the chat state topic and wait until every one is acknowledged."""
    producer = make_producer(k, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topics.state("chat"), value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
