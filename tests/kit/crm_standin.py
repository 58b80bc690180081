"""A local stand-in for a CRM's HTTP API, as a real one behaves, with injectable faults.

- ``POST /contacts``: upsert by ``email`` if given, else by ``external_id``.
- ``POST /activities``: upserts the activity of a chat (by ``external_id``; a repeated
  request without idempotency would apply twice).
- Every request must carry the expected auth header, a valid Standard Webhooks signature and
  an ``Idempotency-Key``; a key seen before returns the stored answer without applying again.
- ``faults``: a queue of what to do to the next requests: ``"429"`` (with Retry-After),
  ``"500"``, ``"timeout"`` (answers after ``timeout_delay_s``), ``"slow"`` (``slow_delay_s``
  then normal), ``"400"``; ``always`` is applied to requests whose JSON matches a predicate.

For redirects: :class:`Redirector` answers every POST with a 3xx pointing at another server,
and :class:`Recorder` is that other server, keeping whatever reaches it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from consumers.crm.signing import verify

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="  # base64("secret-key-for-tests-only")
TOKEN = "Bearer crm-test-token"


@dataclass
class Call:
    path: str
    key: str | None
    status: int
    signed: bool
    doc: dict[str, Any]


@dataclass
class StandInCrm:
    faults: deque[str] = field(default_factory=deque)
    always: list[tuple[Callable[[dict[str, Any]], bool], str]] = field(default_factory=list)
    retry_after_s: int = 1
    timeout_delay_s: float = 3.0
    slow_delay_s: float = 0.2
    delay_s: float = 0.0  # every request
    calls: list[Call] = field(default_factory=list)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    activities: list[dict[str, Any]] = field(default_factory=list)
    _answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/contacts", self._handle)
        app.router.add_post("/api/activities", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("idempotency-key")
        signed = verify(SECRET, headers, body)
        doc = orjson.loads(body) if body else {}
        path = request.path.removeprefix("/api")

        def answer(status: int, payload: object = None,
                   extra: dict[str, str] | None = None) -> web.Response:
            self.calls.append(Call(path=path, key=key, status=status, signed=signed, doc=doc))
            return web.Response(status=status, body=orjson.dumps(payload or {}),
                                content_type="application/json", headers=extra)

        if headers.get("authorization") != TOKEN:
            return answer(401, {"error": "unauthorized"})
        if not signed or not key:
            return answer(400, {"error": "bad signature or missing Idempotency-Key"})
        fault = self.faults.popleft() if self.faults else None
        for predicate, always_fault in self.always:
            if predicate(doc):
                fault = always_fault
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if fault == "429":
            return answer(429, {"error": "slow down"}, {"Retry-After": str(self.retry_after_s)})
        if fault == "500":
            return answer(500, {"error": "boom"})
        if fault == "400":
            return answer(400, {"error": "invalid field"})
        if fault == "timeout":
            await asyncio.sleep(self.timeout_delay_s)  # the client gave up long ago
        if fault == "slow":
            await asyncio.sleep(self.slow_delay_s)
        if key in self._answers:  # replay: same answer, applied once
            status, stored = self._answers[key]
            self.calls.append(Call(path=path, key=key, status=status, signed=signed, doc=doc))
            return web.Response(status=status, body=stored, content_type="application/json")
        if path == "/contacts":
            ident = doc.get("email") or doc.get("external_id")
            existing = self.contacts.get(ident) or next(
                (c for c in self.contacts.values()
                 if c.get("external_id") == doc.get("external_id")), None)
            if existing is not None:
                existing.update(doc)
                result = existing
                if doc.get("email") and doc["email"] not in self.contacts:
                    for k in [k for k, v in self.contacts.items() if v is existing]:
                        del self.contacts[k]
                    self.contacts[doc["email"]] = existing
            else:
                result = {"id": next(self._ids), **doc}
                self.contacts[ident] = result
        else:  # one activity per chat: upserted by its external id
            current = next((a for a in self.activities
                            if a.get("external_id") == doc.get("external_id")), None)
            if current is not None:
                current.update(doc)
                result = current
            else:
                result = {"id": next(self._ids), **doc}
                self.activities.append(result)
        stored = orjson.dumps(result)
        self._answers[key] = (200, stored)
        self.calls.append(Call(path=path, key=key, status=200, signed=signed, doc=doc))
        return web.Response(status=200, body=stored, content_type="application/json")


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Any method, any path: keeps the request and answers 200 (as a careless server would)."""

    requests: list[Received] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.method, request.path, dict(request.headers),
                                      await request.read()))
        return web.json_response({"id": len(self.requests)})


@dataclass
class Redirector:
    """A CRM that moved: every POST gets ``status_for(doc)`` with ``Location: {target}/moved/
    {status}`` (the request is kept in ``requests``)."""

    target: str
    status_for: Callable[[dict[str, Any]], int]
    requests: list[Received] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.method, request.path, dict(request.headers), body))
        status = self.status_for(orjson.loads(body))
        return web.Response(status=status, headers={"Location": f"{self.target}/moved/{status}"})


class Serving:
    """Serve an aiohttp app on a free port of 127.0.0.1 for the test's duration; ``url`` is
    ``http://127.0.0.1:<port>``."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.url = ""

    async def __aenter__(self) -> Serving:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


class RunningStandIn(Serving):
    """Serve a :class:`StandInCrm`; ``url`` is its API's base URL (``…/api``)."""

    def __init__(self, crm: StandInCrm) -> None:
        super().__init__(crm.app())
        self.crm = crm

    async def __aenter__(self) -> RunningStandIn:
        await super().__aenter__()
        self.url += "/api"
        return self
