"""A receiver served by ``parley.http.serve`` on a real 127.0.0.1 socket, and raw-socket
clients for it: request heads written by hand, answers read byte by byte, bodies dripped at a
chosen pace. For the tests of slow, greedy and malformed clients (which an HTTP client library
would refuse to be)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import msgspec
import pytest

from contracts.topics import Topics
from parley.http import bind, build_app, serve
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings
from receiver.role import ReceiverRole
from tests.kit import receiver_app as rx

MiB = 1024 * 1024
BUFFERED = "parley_receiver_buffered_body_bytes"


@dataclass
class Server:
    rt: Runtime
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def buffered_bytes(self) -> float:
        value = self.rt.registry.get_sample_value(BUFFERED)
        assert value is not None
        return value


Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server(kafka_settings: KafkaSettings, topics: Topics) -> AsyncIterator[Start]:
    """Factory: ``await start_server(**http_settings)`` → a receiver served by
    ``parley.http.serve`` on a free 127.0.0.1 port, answering once it returns."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**http: object) -> Server:
        base = rx.receiver_settings(kafka_settings, rx.Credentials(natterly=rx.NATTERLY_TOKENS))
        settings = msgspec.structs.replace(
            base, http=HttpSettings(host="127.0.0.1", port=0, shutdown_timeout_s=2.0,
                                    **http))  # type: ignore[arg-type]
        rt = Runtime.from_settings(settings)
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(serve(build_app(rt, [ReceiverRole(rt)]), rt, stop=stop,
                                         sock=sock))
        stops.append((stop, task))
        async with asyncio.timeout(30):  # listening once the roles started
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
                    continue
                await close_writer(writer)
                break
        return Server(rt, port)

    yield start
    for stop, task in stops:
        stop.set()
        await task


def request_head(path: str, content_length: int | None, extra: str = "") -> bytes:
    length = f"Content-Length: {content_length}\r\n" if content_length is not None else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{length}{extra}\r\n").encode()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a raw connection and wait until it is closed: a transport left closing when the
    test's loop ends is collected later, as a ResourceWarning in some other test."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def read_status(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of the answer; (0, {}) if the server closed without one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, {}
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers


@dataclass
class Dripped:
    status: int
    headers: dict[str, str]
    elapsed_s: float
    sent_bytes: int


async def drip_request(port: int, head: bytes, chunk: bytes, interval_s: float,
                started: asyncio.Event | None = None, until_closed: bool = False) -> Dripped:
    """Send ``head``, then ``chunk`` every ``interval_s`` (the pacing is the behaviour under
    test) until the server answers (and, ``until_closed``, closes the connection). Returns
    what it answered, and when."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    sent = 0

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            writer.write(head)
            await writer.drain()
            if started is not None:
                started.set()
            while True:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(interval_s)

    sender = asyncio.create_task(send())
    try:
        status, headers = await read_status(reader)
        if status and until_closed:
            with contextlib.suppress(ConnectionError):
                await reader.read()
        return Dripped(status, headers, time.monotonic() - t0, sent)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await close_writer(writer)
