"""parley/http.py: a path or method no route serves is answered in Parley's JSON error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from parley.http import build_app, json_response
from parley.runtime import Runtime
from parley.settings import HttpSettings, Settings

TOKEN = "route-token-5e1c9a7b3d2f8e40"
Client = Callable[[HttpSettings], Awaitable[aiohttp.ClientSession]]


class FakeRole:
    """A read route and a webhook route, shaped like the real ones."""

    name = "fake"

    def install(self, app: web.Application, rt: Runtime) -> None:
        async def ok(request: web.Request) -> web.Response:
            return json_response({"ok": True})

        app.router.add_get("/api/things", ok)
        app.router.add_post("/webhooks/{source}", ok)
        app.router.add_get("/webhooks/{source}", ok)


@pytest.fixture
async def client_for() -> AsyncIterator[Client]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(http: HttpSettings) -> aiohttp.ClientSession:
        server = TestServer(build_app(Runtime.from_settings(Settings(http=http)), [FakeRole()]))
        await server.start_server()
        servers.append(server)
        sessions.append(aiohttp.ClientSession(base_url=str(server.make_url("/"))))
        return sessions[-1]

    yield make
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


async def test_a_method_no_route_serves_is_a_405_json_error_naming_the_allowed_ones(
        client_for: Client) -> None:
    http = await client_for(HttpSettings())
    for method, path in (("PUT", "/webhooks/acme"), ("DELETE", "/webhooks/acme"),
                         ("POST", "/api/things")):
        async with http.request(method, path, data=b"{}") as resp:
            assert resp.status == 405, (method, path)
            assert resp.content_type == "application/json"
            body = await resp.json()
            assert body["error"] == "method_not_allowed" and "allowed: " in body["detail"]
            assert "GET" in resp.headers["Allow"]


async def test_a_path_no_route_serves_is_a_404_json_error(client_for: Client) -> None:
    http = await client_for(HttpSettings())
    for path in ("/api/nowhere", "/api/things/extra", "/webhooks", "/nowhere"):
        async with http.get(path) as resp:
            assert resp.status == 404, path
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"] == "not_found"


async def test_with_tokens_an_unknown_path_still_asks_for_a_token_first(
        client_for: Client) -> None:
    http = await client_for(HttpSettings(api_tokens=(TOKEN,)))
    async with http.get("/api/nowhere") as resp:
        assert resp.status == 401
    async with http.get("/api/nowhere", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
