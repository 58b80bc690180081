"""``/readyz`` (issue 16, hole 12): open to anyone, so it must neither reveal what is wrong
(the reasons name brokers, stores and users) without a token, nor let a flood of requests
become a flood of Kafka metadata requests: results are cached for a short TTL and shared by
concurrent callers. Failures are classified, never an exception's text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from parley.errors import KafkaUnavailable
from parley.http import HIDDEN_REASON, READINESS, build_app
from parley.readiness import READY_TTL_S, ReadinessCache, failure_reason
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings
from receiver.role import ReceiverRole

TOKEN = "readyz-token-5e0c7d2a9b41f386"
LEAKY = "Kafka unreachable: broker-7.corp.internal:9093 refused SASL user parley-app"


class Probe:
    """A readiness check that counts its calls (each one a metadata request, for the
    receiver's) and answers what the test says."""

    def __init__(self) -> None:
        self.calls = 0
        self.problem: str | None = None

    async def __call__(self) -> str | None:
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: concurrent callers overlap here
        return self.problem


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(http: HttpSettings, ttl_s: float | None = None
                   ) -> tuple[aiohttp.ClientSession, Probe, web.Application]:
        rt = Runtime.from_settings(Settings(http=http))
        probe = Probe()
        rt.readiness["kafka-producer"] = probe
        app = build_app(rt, [])
        if ttl_s is not None:
            app[READINESS].ttl_s = ttl_s
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession(base_url=str(server.make_url("/")))
        sessions.append(session)
        return session, probe, app

    yield make
    for s in sessions:
        await s.close()
    for server in servers:
        await server.close()


async def test_a_flood_of_readyz_sends_one_check_per_ttl(served) -> None:  # type: ignore[no-untyped-def]
    http, probe, app = await served(HttpSettings())

    async def ready() -> int:
        async with http.get("/readyz") as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(ready() for _ in range(200)))
    for _ in range(50):  # and one after another, within the TTL
        statuses.append(await ready())
    assert set(statuses) == {200}
    assert probe.calls == 1, f"{probe.calls} checks for 250 requests within {READY_TTL_S} s"

    # After the TTL the next request checks again (once), and sees the change.
    app[READINESS].ttl_s = 0.05
    probe.problem = "down"
    deadline = asyncio.get_running_loop().time() + 10
    while await ready() != 503:
        assert asyncio.get_running_loop().time() < deadline
    assert 2 <= probe.calls <= 3


async def test_reasons_need_a_token_when_tokens_are_set(served) -> None:  # type: ignore[no-untyped-def]
    http, probe, _ = await served(HttpSettings(api_tokens=(TOKEN,)))
    probe.problem = LEAKY
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        async with http.get("/readyz", headers=headers) as resp:
            assert resp.status == 503  # never 401: probes carry no credentials
            text = await resp.text()
            assert await resp.json() == {"status": "not ready",
                                         "problems": {"kafka-producer": HIDDEN_REASON}}
            for leaked in ("broker-7", "9093", "parley-app", "SASL"):
                assert leaked not in text
    async with http.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 503
        assert (await resp.json())["problems"] == {"kafka-producer": LEAKY}
    probe.problem = None


async def test_without_tokens_a_loopback_readyz_says_why(served) -> None:  # type: ignore[no-untyped-def]
    http, probe, _ = await served(HttpSettings(host="127.0.0.1"))
    probe.problem = "Kafka producer not started"
    async with http.get("/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["problems"] == {"kafka-producer": "Kafka producer not started"}


async def test_a_failing_check_is_not_ready_and_a_cancelled_caller_cancels_no_one() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str | None:
        started.set()
        await release.wait()
        return None

    async def broken() -> str | None:
        raise KafkaConnectionError("Unable to bootstrap from [('broker-7.corp.internal', 9093)]")

    cache = ReadinessCache({"slow": slow, "broken": broken})
    first = asyncio.create_task(cache.results())
    await started.wait()
    second = asyncio.create_task(cache.results())
    first.cancel()
    release.set()
    assert await second == {"broken": "check failed: KafkaConnectionError", "slow": None}


@pytest.mark.parametrize(("exc", "reason"), [
    (KafkaConnectionError("Unable to bootstrap from [('broker-7.corp.internal', 9093)]"),
     "Kafka error (KafkaConnectionError)"),
    (SaslAuthenticationFailed("user parley-app: authentication failed"),
     "Kafka refused the credentials (SaslAuthenticationFailed)"),
    (OSError("connection to server at \"pg.corp.internal\" (10.0.0.5), port 5432 failed"),
     "connection failed (OSError)"),
    (TimeoutError(), "timed out (TimeoutError)"),
    (KafkaUnavailable("broker-7.corp.internal:9093 did not answer"), "Kafka unavailable (KafkaUnavailable)"),
    (RuntimeError("password authentication failed for user \"parley_admin\""), "failed (RuntimeError)"),
])
def test_failures_are_classified_never_echoed(exc: BaseException, reason: str) -> None:
    assert failure_reason(exc) == reason


@pytest.mark.kafka
async def test_a_flood_of_readyz_sends_one_metadata_request_to_a_real_broker(
        kafka_settings: KafkaSettings, topics: object, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(kafka=kafka_settings, sources={"acme": SourceSettings(
        provider="natterly", auth_tokens=("nat-token-7f3a9c0e5b21",))})
    rt = Runtime.from_settings(settings)
    server = TestServer(build_app(rt, [ReceiverRole(rt)]))
    await server.start_server()  # the producer connects before the app serves
    try:
        publisher = rt.readiness["kafka-producer"].__self__  # type: ignore[attr-defined]
        client = publisher._producer.client
        requests = 0
        fetch = client.fetch_all_metadata

        async def counted() -> object:
            nonlocal requests
            requests += 1
            return await fetch()

        monkeypatch.setattr(client, "fetch_all_metadata", counted)
        async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
            async def ready() -> int:
                async with http.get("/readyz") as resp:
                    await resp.read()
                    return resp.status

            started = asyncio.get_running_loop().time()
            statuses = await asyncio.gather(*(ready() for _ in range(300)))
            elapsed = asyncio.get_running_loop().time() - started
        assert set(statuses) == {200}
        # One per TTL begun while the flood lasted (one, unless this slow machine took longer).
        assert requests <= 1 + int(elapsed / READY_TTL_S), (requests, elapsed)
    finally:
        await server.close()
