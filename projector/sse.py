"""One Server-Sent Events connection: a bounded buffer between a feed and a client.

A feed (a task reading Kafka) hands events to :meth:`SseConnection.put`; a writer sends
them to the client in order, and a comment line (``: heartbeat``) whenever nothing was sent
for ``heartbeat_s``. Memory per connection is bounded by:

1. the buffer: at most ``buffer_events`` events wait to be written. When it is full the feed
   waits (a backlog after a resume is sent at the client's pace), but at most
   ``stall_timeout_s``: a client that takes no event for that long is cut off (step 3);
2. the socket: its kernel send buffer is set to ``send_buffer_bytes`` and aiohttp's write
   waits for the transport to drain, so a stalled client blocks the writer, the buffer
   fills, and step 1 applies;
3. the cut-off: a final ``event: cutoff`` (its data names the last id written, to resume
   from) is written and the response ended if the socket takes them within
   ``final_write_timeout_s``; otherwise the connection is aborted, dropping what the client
   did not read, so nothing stays queued for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import msgspec
from aiohttp import web

__all__ = ["SseConnection", "SseEvent", "SseOptions"]

_JSON = msgspec.json.Encoder()


@dataclass(frozen=True, kw_only=True)
class SseOptions:
    """Per-connection bounds of a stream (see the module docstring)."""

    heartbeat_s: float = 15.0
    buffer_events: int = 64
    stall_timeout_s: float = 10.0
    send_buffer_bytes: int = 64 * 1024
    final_write_timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: ``id`` (a Parley position, or a vector of them), ``event`` name, and
    ``data`` (JSON without newlines: msgspec escapes them inside strings)."""

    id: str
    event: str
    data: bytes

    def frame(self) -> bytes:
        return b"id: %b\nevent: %b\ndata: %b\n\n" % (self.id.encode(), self.event.encode(),
                                                      self.data)


class _Overflow(Exception):
    pass


class SseConnection:
    """The writing side of one ``text/event-stream`` response; see the module docstring."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 options: SseOptions) -> None:
        self._request = request
        self._response = response
        self._options = options
        self._queue: asyncio.Queue[SseEvent] = asyncio.Queue(options.buffer_events)
        self._overflow = asyncio.Event()
        self.last_id: str | None = None  # of the last event written to the socket

    @staticmethod
    def response(request: web.Request, options: SseOptions) -> web.StreamResponse:
        """The response headers of an event stream, with the socket's send buffer bounded."""
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, options.send_buffer_bytes)
        return web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # proxies (nginx) must not hold events back

    async def put(self, event: SseEvent) -> bool:
        """Queue ``event``, waiting for room at most ``stall_timeout_s``; False (and the
        connection is being cut off) if the client took nothing for that long."""
        try:
            await asyncio.wait_for(self._queue.put(event), self._options.stall_timeout_s)
        except TimeoutError:
            self._overflow.set()
            return False
        return True

    async def pump(self, feed: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Write events until the client goes away, ``feed`` ends (it raised: a final
        ``event: error``), ``stop`` is set (the server stops), or the buffer overflows."""
        writer = asyncio.create_task(self._write_all())
        overflow = asyncio.create_task(self._overflow.wait())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([writer, overflow, stopped, feed],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, overflow, stopped):
                task.cancel()
            feed.cancel()
            await asyncio.gather(writer, overflow, stopped, feed, return_exceptions=True)
        if self._overflow.is_set():
            await self._final("cutoff", {
                "error": "slow_client",
                "detail": f"this client took no event for {self._options.stall_timeout_s:g} s "
                          "with more waiting; reconnect with Last-Event-ID to resume",
                "last_event_id": self.last_id})
        elif feed.done() and not feed.cancelled() and feed.exception() is not None:
            await self._final("error", {"error": "unavailable",
                                        "detail": "reading state changes failed; reconnect "
                                                  "with Last-Event-ID to resume",
                                        "last_event_id": self.last_id})

    async def _write_all(self) -> None:
        response, queue = self._response, self._queue
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), self._options.heartbeat_s)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            await response.write(event.frame())
            self.last_id = event.id

    async def _final(self, name: str, body: dict[str, object]) -> None:
        frame = b"event: %b\ndata: %b\n\n" % (name.encode(), _JSON.encode(body))

        async def end() -> None:
            await self._response.write(frame)
            await self._response.write_eof()  # waits until the socket took it all

        try:
            await asyncio.wait_for(end(), self._options.final_write_timeout_s)
        except (TimeoutError, ConnectionError):
            transport = self._request.transport
            if transport is not None:
                transport.abort()  # a stalled client: drop what it did not read
