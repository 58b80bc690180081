"""Slow and greedy clients against a real server on 127.0.0.1 (``parley.http.serve``, real
sockets, real broker): body and header deadlines, the connection cap, and the budget of
buffered body bytes, while a well-behaved sender keeps getting its 2xx."""

from __future__ import annotations

import asyncio
import logging
from types import ModuleType

import aiohttp
import pytest

from parley.http import bind, build_app, serve
from parley.limits import LINGER_S
from parley.loop import EventLoopName, run
from parley.runtime import Runtime
from parley.settings import HttpSettings, Settings
from tests.kit.raw_http import MiB, Server, Start, close_writer, drip_request, read_status, request_head

pytestmark = pytest.mark.kafka


async def _good_webhook(server: Server, rx: ModuleType) -> aiohttp.ClientResponse:
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.url}/webhooks/acme", data=body, headers=rx.JSON,
            timeout=aiohttp.ClientTimeout(total=10)) as resp:
        await resp.read()
        return resp


async def test_a_body_sent_one_byte_a_second_is_cut_off_at_its_deadline(
        start_server: Start, rx: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    server = await start_server(body_timeout_s=2.0)
    started = asyncio.Event()
    drip = asyncio.create_task(drip_request(server.port, request_head("/webhooks/acme", MiB),
                                            b" ", 1.0, started, until_closed=True))
    await started.wait()
    # While it drips, its whole declared body is counted against the budget...
    await rx.eventually(lambda: server.buffered_bytes() == MiB, 5)
    async with asyncio.timeout(6):  # ...until the deadline: 2 s, not the 12 days 1 MiB takes
        got = await drip  # answered and closed at once, not kept open to read the rest
    assert got.status == 408 and 1.5 <= got.elapsed_s < 4, got
    assert got.sent_bytes <= 5
    await rx.eventually(lambda: server.buffered_bytes() == 0, 5)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_headers_sent_one_byte_a_second_are_cut_off_at_the_idle_timeout(
        start_server: Start) -> None:
    server = await start_server(idle_timeout_s=2.0)
    async with asyncio.timeout(6):
        got = await drip_request(server.port, b"POST /webhooks/acme HTTP/1.1\r\nX-Slow: ", b"a", 1.0)
    assert got.status == 0 and 1.5 <= got.elapsed_s < 5, got  # closed, nothing answered


async def _keep_alive(port: int) -> asyncio.StreamWriter:
    """A connection that made one request (so the server holds it) and then stays idle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, headers = await read_status(reader)
    assert status == 200
    await reader.readexactly(int(headers["Content-Length"]))
    return writer


async def _healthz(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    try:
        async with asyncio.timeout(5):  # answered at once, never left waiting
            status, headers = await read_status(reader)
    finally:
        await close_writer(writer)
    assert status != 503 or headers["Retry-After"] == "7", headers
    return status


async def _cap_holds() -> None:
    # No role and no broker: the cap is the HTTP process's, for every route.
    rt = Runtime.from_settings(Settings(http=HttpSettings(max_connections=4, retry_after_s=7)))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(build_app(rt, []), rt, stop=stop, sock=sock))
    try:
        async with asyncio.timeout(10):
            while True:  # listening once the app started
                try:
                    idle = [await _keep_alive(port)]
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
        idle += [await _keep_alive(port) for _ in range(3)]
        assert await _healthz(port) == 503  # the fifth connection
        for w in idle:
            await close_writer(w)
        for _ in range(200):  # closed connections leave the server's count, within 10 s
            if await _healthz(port) == 200:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the cap did not free up after the idle connections closed")
    finally:
        stop.set()
        await server


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_connections_past_the_cap_get_503_and_the_cap_frees_up(event_loop: EventLoopName
                                                                ) -> None:
    if event_loop == "uvloop":
        pytest.importorskip("uvloop")
    run(_cap_holds(), event_loop)


async def test_slow_large_uploads_past_the_budget_get_503_and_a_small_webhook_still_gets_in(
        start_server: Start, rx: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    # 4 MiB budget: bodies over 64 KiB may take 3 MiB of it, so three 1 MiB uploads fit.
    server = await start_server(max_buffered_body_bytes=4 * MiB, body_timeout_s=60.0,
                                retry_after_s=3)
    uploads = [asyncio.create_task(drip_request(server.port, request_head("/webhooks/acme", MiB),
                                                b"x" * 1024, 0.2)) for _ in range(8)]
    try:
        await rx.eventually(lambda: sum(u.done() for u in uploads) == 5, 10)
        shed = [u.result() for u in uploads if u.done()]
        assert all(d.status == 503 and d.headers["Retry-After"] == "3" for d in shed), shed
        assert server.buffered_bytes() == 3 * MiB  # the three still dripping
        for _ in range(3):  # a well-behaved sender is not starved by them
            ok = await _good_webhook(server, rx)
            assert ok.status == 200
    finally:
        for u in uploads:
            u.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
    await rx.eventually(lambda: server.buffered_bytes() == 0, 5)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def _until_free(port: int) -> None:
    """Until a connection is answered, not refused by the cap (a closed connection leaves
    the server's count once its handler task has ended)."""
    for _ in range(40):
        if await _healthz(port) == 200:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the connection cap did not free up")


@pytest.mark.parametrize(("path", "length", "status"), [
    ("/webhooks/acme", 50 * MiB, 413),  # refused by its declared length, nothing read
    ("/webhooks/nobody", MiB, 404),     # refused before its body is read
])
async def test_an_early_answer_frees_its_connection_slot_within_a_second(
        start_server: Start, path: str, length: int, status: int) -> None:
    # One connection at most: while the refused upload holds it, every other one gets 503.
    server = await start_server(max_connections=1, retry_after_s=7)
    await _until_free(server.port)  # start_server's own probe has left
    async with asyncio.timeout(LINGER_S + 3):  # aiohttp used to keep reading it for 10 s
        got = await drip_request(server.port, request_head(path, length), b"x" * 1024, 0.05,
                                 until_closed=True)
    assert got.status == status and got.elapsed_s < LINGER_S + 2, got
    if status == 413:  # its body is never read: the answer says the connection closes
        assert got.headers["Connection"] == "close", got
    await _until_free(server.port)
