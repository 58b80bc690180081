"""aiohttp's log of requests its HTTP parser refuses (issue 16): once a full traceback quoting
the request's bytes per request, so a hostile client could fill the disk. Now one line each
(client, error class), at most a bounded number per interval, then a count of the rest."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage, InvalidHeader

from parley.http import bind, build_app, serve
from parley.logs import MalformedRequests, setup_logging
from parley.runtime import Runtime
from parley.settings import HttpSettings, Settings
from tests.kit.raw_http import close_writer

SECRET = "bearer-secret-never-logged-5be1c3a9"
#: Requests aiohttp's parser refuses, each with a credential it must not log.
MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\nAuthorization: Bearer %s\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-A: a\x01b\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Length: abc\r\n\r\n",
    b"GET /health\x00z?t=%s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n Authorization: Bearer %s\r\n\r\n",
]
REQUESTS = 300


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, server = logging.getLogger(), logging.getLogger("aiohttp.server")
    saved = root.handlers[:], root.level, server.filters[:]
    yield
    root.handlers[:], root.level, server.filters[:] = saved


async def _answer(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            return await reader.read()  # aiohttp answers 400 and closes
    finally:
        await close_writer(writer)


@pytest.mark.usefixtures("restore_logging")
async def test_malformed_requests_log_one_line_each_without_traceback_and_bounded(
        capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")  # no secrets given: nothing of the request may reach the log at all
    rt = Runtime.from_settings(Settings(http=HttpSettings()))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(build_app(rt, []), rt, stop=stop, sock=sock))
    try:
        async with asyncio.timeout(10):
            while True:  # listening once the app started
                try:
                    await _answer(port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
        capfd.readouterr()
        answers = [await _answer(port, MALFORMED[i % len(MALFORMED)].replace(b"%s", SECRET.encode()))
                   for i in range(REQUESTS)]
    finally:
        stop.set()
        await server
    assert all(a.split(b" ", 2)[1] == b"400" for a in answers), {a[:40] for a in answers}
    text = capfd.readouterr().err
    assert "Traceback" not in text and SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    refused = [line for line in lines if line["logger"] == "aiohttp.server"]
    assert 1 <= len(refused) <= MalformedRequests.PER_INTERVAL + 1, len(refused)
    for line in refused:
        assert "exc" not in line and line["level"] == "warning", line
        assert line["client"] == "127.0.0.1" and line["error"] in (
            "BadHttpMessage", "InvalidHeader", "BadStatusLine", "InvalidURLError"), line


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _refused(exc: Exception) -> logging.LogRecord:
    """The record aiohttp's server logs for ``exc`` (its traceback is not needed here)."""
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                             "Error handling request from %s", ("203.0.113.9",),
                             (type(exc), exc, None))


def test_past_the_bound_lines_are_counted_and_the_count_is_logged_next_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limit = MalformedRequests(per_interval=3, interval_s=60, clock=clock)
    passed = [limit.filter(_refused(InvalidHeader(SECRET.encode()))) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    clock.now = 61
    with caplog.at_level(logging.WARNING, "aiohttp.server"):
        record = _refused(BadHttpMessage(SECRET))
        assert limit.filter(record)
    assert [(r.getMessage(), r.__dict__.get("suppressed")) for r in caplog.records] == [
        ("7 more malformed HTTP requests were not logged in the last 60 s", 7)]
    assert record.exc_info is None and record.levelno == logging.WARNING
    assert record.getMessage() == "malformed HTTP request from 203.0.113.9: BadHttpMessage"
    assert SECRET not in record.getMessage()


def test_other_aiohttp_errors_keep_their_traceback() -> None:
    limit = MalformedRequests(per_interval=1, interval_s=60, clock=Clock())
    records = [_refused(ValueError("a bug of ours")) for _ in range(3)]
    assert all(limit.filter(r) for r in records)  # a 500's traceback is never hidden
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in records)
