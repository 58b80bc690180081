"""The console's gate (parley/console/session.py, app.py): login with an API token into an
HttpOnly SameSite=Strict cookie, CSRF on every POST, logout, the security headers, error
pages, and the live streams opened by the console's cookie. In-process app of the
projector role, Kafka unreachable (nothing here needs it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from parley.console.app import CSP
from parley.process import assemble
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, StoreSettings
from projector.role import ProjectorRole

TOKEN = "console-token-8e1f4a7c2b9d3650"
OTHER = "other-token-1a2b3c4d5e6f7a8b"

Client = Callable[..., Awaitable[aiohttp.ClientSession]]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(tokens: tuple[str, ...] = (TOKEN,)) -> aiohttp.ClientSession:
        settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
                            data_dir=str(tmp_path / "data"),
                            http=HttpSettings(api_tokens=tokens),
                            store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"))
        rt = Runtime.from_settings(settings)
        server = TestServer(assemble(rt, [ProjectorRole(rt)]))
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession(base_url=str(server.make_url("/")),
                                        cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(session)
        return session

    yield make
    for s in sessions:
        await s.close()
    for server in servers:
        await server.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


async def login(http: aiohttp.ClientSession, token: str = TOKEN) -> aiohttp.ClientResponse:
    async with http.get("/console/login") as resp:
        csrf = csrf_of(await resp.text())
    async with http.post("/console/login", data={"token": token, "csrf": csrf,
                                                 "next": "/console"},
                         allow_redirects=False) as resp:
        await resp.read()
        return resp


async def test_pages_need_a_login_and_the_cookie_is_httponly_and_strict(client: Client) -> None:
    http = await client()
    async with http.get("/console", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/console/login?next=%2Fconsole"
    async with http.get("/console/login") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
        assert 'type="password"' in await resp.text()
    resp = await login(http)
    assert resp.status == 303 and resp.headers["Location"] == "/console"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure
    async with http.get("/console") as resp:
        assert resp.status == 200
        body = await resp.text()
        assert "Overview" in body and TOKEN not in body
        assert resp.headers["Cache-Control"] == "no-store"


async def test_a_wrong_token_is_the_login_page_again(client: Client) -> None:
    http = await client()
    resp = await login(http, OTHER)
    assert resp.status == 401
    async with http.get("/console", allow_redirects=False) as resp:
        assert resp.status == 303  # still not logged in
    # A cookie carrying a wrong token is no session either.
    http.cookie_jar.update_cookies({"parley_console": "abc123.d3Jvbmc"})
    async with http.get("/console", allow_redirects=False) as resp:
        assert resp.status == 303


async def test_every_post_needs_the_sessions_csrf_token(client: Client) -> None:
    http = await client()
    async with http.get("/console/login") as resp:
        await resp.read()
    # No CSRF token: refused, not logged in.
    async with http.post("/console/login", data={"token": TOKEN},
                         allow_redirects=False) as resp:
        assert resp.status == 403 and TOKEN not in await resp.text()
    async with http.get("/console", allow_redirects=False) as resp:
        assert resp.status == 303
    assert (await login(http)).status == 303
    async with http.get("/console") as resp:
        csrf = csrf_of(await resp.text())
    # Another session's token (the one before login) is not this session's.
    async with http.post("/console/logout", data={"csrf": "0" * 64},
                         allow_redirects=False) as resp:
        assert resp.status == 403
    async with http.post("/console/logout", headers={"X-CSRF-Token": csrf},
                         allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    async with http.get("/console", allow_redirects=False) as resp:
        assert resp.status == 303  # logged out


async def test_login_sends_only_to_console_pages(client: Client) -> None:
    http = await client()
    async with http.get("/console/login") as resp:
        csrf = csrf_of(await resp.text())
    for evil in ("https://evil.example/", "//evil.example/console", "/console/../api/chats",
                 "/api/chats"):
        async with http.post("/console/login", data={"token": TOKEN, "csrf": csrf,
                                                     "next": evil},
                             allow_redirects=False) as resp:
            assert resp.headers["Location"] == "/console", evil
        http.cookie_jar.clear()
        async with http.get("/console/login") as resp:
            csrf = csrf_of(await resp.text())


async def test_unknown_page_is_a_404_page_and_static_files_are_served(client: Client) -> None:
    http = await client()
    await login(http)
    async with http.get("/console/no-such-page") as resp:
        assert resp.status == 404
        assert "text/html" in resp.headers["Content-Type"]
        assert "no console page" in await resp.text()
    async with http.get("/console/panels/nope") as resp:
        assert resp.status == 404
    for name in ("console.css", "console.js"):
        async with http.get(f"/console/static/{name}") as resp:
            assert resp.status == 200 and resp.headers["Content-Security-Policy"] == CSP


async def test_the_live_streams_accept_the_console_cookie_for_get(client: Client) -> None:
    http = await client()
    async with http.get("/api/stream") as resp:
        assert resp.status == 401
    async with http.get("/api/chats/c1") as resp:
        assert resp.status == 401
    await login(http)
    # Kafka is unreachable here: past the gate, the stream answers 503, not 401.
    async with http.get("/api/stream") as resp:
        assert resp.status == 503
    async with http.get("/api/chats/c1/stream") as resp:
        assert resp.status == 503
    # The cookie opens the streams only: the rest of the API still needs a bearer token.
    async with http.get("/api/chats/c1") as resp:
        assert resp.status == 401


async def test_without_tokens_the_console_is_as_open_as_the_api(client: Client) -> None:
    http = await client(tokens=())
    async with http.get("/console") as resp:
        assert resp.status == 200
        body = await resp.text()
        assert "Log out" not in body
    async with http.get("/console/login", allow_redirects=False) as resp:
        assert resp.status == 303
    # A POST still needs the CSRF token of the session.
    async with http.post("/console/logout", allow_redirects=False) as resp:
        assert resp.status == 403


async def test_pages_have_no_inline_script_or_style(client: Client) -> None:
    http = await client()
    await login(http)
    for path in ("/console", "/console/login", "/console/nope", "/console/reports",
                 "/console/reports/live"):
        async with http.get(path) as resp:
            html = await resp.text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


async def test_kafka_down_shows_as_down_never_a_500(client: Client) -> None:
    http = await client()
    await login(http)
    async with http.get("/console") as resp:
        assert resp.status == 200
        html = await resp.text()
    # The Kafka panels say they are down; the store's panel is served all the same.
    for name in ("appended", "groups", "topics"):
        section = html.split(f'data-panel="/console/panels/{name}"')[1].split("</section>")[0]
        assert 'data-state="down"' in section, name
    store = html.split('data-panel="/console/panels/store"')[1].split("</section>")[0]
    assert 'data-count="chat"' in store and "unknown (Kafka did not answer in time)" in store
    for name in ("groups", "topics", "store", "traffic"):
        async with http.get(f"/console/panels/{name}") as resp:
            assert resp.status == 200, name


async def test_odd_input_is_a_4xx_page_never_a_500(client: Client) -> None:
    http = await client()
    await login(http)
    paths = ["/console/chats?status=%00", "/console/chats?limit=-1", "/console/chats?limit=99999",
             "/console/chats?limit=abc", "/console/chats?cursor=%FF%FE", "/console/chats?q=%20",
             "/console/chats?q=x", "/console/chats?type=%E2%80%8B", "/console/chats/%00",
             "/console/chats/%F0%9F%98%80", "/console/chats/a%2F..%2Fb", "/console/chats/x/timeline",
             "/console/agents/%00", "/console/agents/x/history", "/console/visitors/%FF",
             "/console/visitors?id=%00", "/console/panels/%2E%2E", "/console/static/..%2F..%2Fapp.py"]
    for path in paths:
        async with http.get(path, allow_redirects=False) as resp:
            assert resp.status < 500, (path, resp.status, await resp.text())
            assert TOKEN not in await resp.text()
