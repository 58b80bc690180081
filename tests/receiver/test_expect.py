"""The ``Expect`` header, on a real server (``parley.http.serve``, real sockets, real broker).

aiohttp answers ``Expect`` before any middleware runs, on every route and on paths that match
none; its own answer to a value that is not UTF-8 was a 500 (it put the bytes into a text
body it then failed to encode). ``Expect: 100-continue`` must still work for an upload.
"""

from __future__ import annotations

import asyncio
import json
from types import ModuleType

import pytest

from tests.kit.raw_http import MiB, Start, close_writer, read_status

pytestmark = pytest.mark.kafka

# Every kind of route of a receiver process, and a path that matches none.
ROUTES = [(b"POST", b"/webhooks/acme"), (b"GET", b"/webhooks/acme"), (b"POST", b"/webhooks/nobody"),
          (b"GET", b"/healthz"), (b"GET", b"/readyz"), (b"GET", b"/metrics"),
          (b"GET", b"/api/openapi.json"), (b"POST", b"/nowhere"), (b"DELETE", b"/healthz")]


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection; the final answer's status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            status, headers = await read_status(reader)
            body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    finally:
        await close_writer(writer)
    return status, headers, body


def _request(method: bytes, path: bytes, expect: bytes, body: bytes = b"{}") -> bytes:
    return (method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nExpect: " + expect + b"\r\n\r\n" + body)


@pytest.mark.parametrize("expect", [b"\xb4~", b"100-continue\xff", b"\xe9t\xe9"])
async def test_an_expect_header_that_is_not_utf8_is_a_400_json_error_on_every_route(
        start_server: Start, expect: bytes) -> None:
    server = await start_server()
    for method, path in ROUTES:
        status, headers, body = await _exchange(server.port, _request(method, path, expect))
        assert status == 400, (method, path, status, body)
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] == "bad_request"


async def test_an_expectation_other_than_100_continue_is_a_417_json_error(
        start_server: Start) -> None:
    server = await start_server()
    for method, path in ROUTES:
        status, _, body = await _exchange(server.port, _request(method, path, b"something-else"))
        assert status == 417, (method, path, status, body)
        assert json.loads(body)["error"] == "expectation_failed"


async def test_expect_100_continue_still_works_for_a_valid_upload(
        start_server: Start, rx: ModuleType) -> None:
    server = await start_server()
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # The headers alone: the body follows only once the server said to go on.
        writer.write(_request(b"POST", b"/webhooks/acme", b"100-Continue", body)[:-len(body)])
        async with asyncio.timeout(10):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            status, headers = await read_status(reader)
            answer = json.loads(await reader.readexactly(int(headers["Content-Length"])))
    finally:
        await close_writer(writer)
    assert status == 200, answer
    assert set(answer) == {"event_id", "position"}


async def test_expect_100_continue_with_an_oversized_body_is_refused(start_server: Start) -> None:
    server = await start_server()
    raw = (b"POST /webhooks/acme HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(50 * MiB).encode() + b"\r\nExpect: 100-continue\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            status, _ = await read_status(reader)
            if status == 100:  # aiohttp says go on before the route's handler runs
                status, _ = await read_status(reader)
    finally:
        await close_writer(writer)
    assert status == 413
