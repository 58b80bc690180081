"""A cap on the HTTP server's open connections (``http.max_connections``).

aiohttp accepts every connection the kernel hands it; a flood of slow clients would each
hold a socket, a parser and a task. :class:`CappedSockSite` serves like aiohttp's
``SockSite`` but, once ``max_connections`` are open, answers each further connection with a
fixed ``503`` (``Retry-After``, Parley's JSON error shape) and closes it, without parsing
anything it sent. The refused connection costs no task and no buffer (what it sends is
discarded), and lives at most :data:`LINGER_S` so the client can read the answer before the
socket closes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import msgspec
from aiohttp import web

__all__ = ["LINGER_S", "CappedSockSite"]

#: How long a connection answered before its request was read whole stays open, discarding
#: what it sends: a 503 of the cap here, and any early answer (413, 401, 404…) in
#: ``parley.http.serve`` (aiohttp's ``lingering_time``, 10 s by default, held the slot that
#: long). The client may still be sending; closing at once, with its bytes unread, would
#: reset the connection, and the client could lose the answer before reading it.
LINGER_S = 1.0


def _refusal(retry_after_s: int) -> bytes:
    body = msgspec.json.encode({"error": "overloaded",
                                "detail": "too many open connections; retry later"})
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {retry_after_s}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class _Refused(asyncio.Protocol):
    """Writes the canned 503, half-closes, discards whatever arrives, closes soon after."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of asyncio's (uvloop's is not).
        transport = cast(asyncio.Transport, transport)
        transport.write(self._answer)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request of a refused connection is never parsed or kept

    def eof_received(self) -> bool:
        return False  # the client is done: close now


class CappedSockSite(web.SockSite):
    """aiohttp's ``SockSite`` with at most ``max_connections`` open connections."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, max_connections: int,
                 retry_after_s: int) -> None:
        super().__init__(runner, sock)
        self._max_connections = max_connections
        self._answer = _refusal(retry_after_s)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        cap, answer = self._max_connections, self._answer

        def protocol() -> asyncio.Protocol:
            # aiohttp's server keeps each connection until its handler task ended, so this
            # counts every connection that still holds resources.
            if len(server.connections) >= cap:
                return _Refused(answer)
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, sock=self._sock, backlog=self._backlog)
