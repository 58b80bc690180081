"""Graceful shutdown: stop accepting, let in-flight requests finish with Kafka's answer,
flush, stop — no request that was being handled is cut off or left unwritten."""

from __future__ import annotations

import asyncio
from types import ModuleType

import aiohttp
import pytest

from contracts.envelope import decode_envelope
from contracts.position import Position
from contracts.topics import Topics
from parley.settings import KafkaSettings
from receiver.publisher import PublisherOptions

pytestmark = pytest.mark.kafka


async def test_shutdown_drains_in_flight_requests_then_flushes(
        rx: ModuleType, make_receiver: object, kafka_settings: KafkaSettings, topics: Topics,
        credentials: object) -> None:
    # A long linger keeps every request parked in the producer when shutdown begins.
    client = await make_receiver(  # type: ignore[operator]
        rx.receiver_settings(kafka_settings, credentials), PublisherOptions(linger_ms=400))
    warm = await client.post("/webhooks/acme", headers=rx.JSON,
                             data=rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0]))
    assert warm.status == 200  # producer connected, topic metadata known

    url = client.make_url("/webhooks/acme")

    async def one(session: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
        body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[1])
        async with session.post(url, data=body,
                                headers=rx.JSON) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as session:
        in_flight = [asyncio.create_task(one(session)) for _ in range(20)]
        await _handling(client, 20)  # all of them are in the handler, waiting for Kafka
        assert not any(t.done() for t in in_flight)
        await client.server.close()  # what SIGTERM does in parley.http.serve
        answers = await asyncio.gather(*in_flight)
        assert [status for status, _ in answers] == [200] * 20
        with pytest.raises(aiohttp.ClientConnectionError):  # no longer accepting
            await one(session)

    records = {Position(r.topic, r.partition, r.offset): r
               for r in await rx.read_all(kafka_settings, topics)}
    for _, answer in answers:
        record = records[Position.parse(answer["position"])]
        assert decode_envelope(record.value).event_id == answer["event_id"]


async def _handling(client: object, n: int, timeout_s: float = 10.0) -> None:
    """Wait until the receiver handles ``n`` webhook requests at once (its in-flight gauge)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        resp = await client.get("/metrics")  # type: ignore[attr-defined]
        text = await resp.text()
        gauge = [line for line in text.splitlines()
                 if line.startswith("parley_receiver_in_flight_requests ")]
        if gauge and float(gauge[0].split()[1]) >= n:
            return
        assert loop.time() < deadline, f"{n} requests never in flight at once: {gauge}"
        await asyncio.sleep(0.01)  # poll interval
