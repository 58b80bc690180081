"""What a process says when it starts serving, and what it does when its port is taken."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from parley.errors import ListenError
from parley.http import PORT_SEARCH, bind, build_app, json_response, serve
from parley.runtime import Runtime
from parley.settings import HttpSettings, Settings, SourceSettings
from parley.startup import log_startup

TOKEN = "nat-token-startup-7c1d0e"
SECRET = "cs-secret-startup-2b9f44"


class Routes:
    """Stands in for the roles: the start-up lines are derived from the routes installed."""

    name = "routes"

    def __init__(self, *paths: str) -> None:
        self.paths = paths

    def install(self, app: web.Application, rt: Runtime) -> None:
        async def answer(request: web.Request) -> web.Response:
            return json_response({})

        for path in self.paths:
            app.router.add_route("*", path, answer)


WEBHOOKS = Routes("/webhooks/{source}")


async def _start_and_stop(settings: Settings, roles: list[object],
                          caplog: pytest.LogCaptureFixture) -> list[str]:
    """Serve until the start-up lines are out, then stop; the messages logged meanwhile."""
    caplog.set_level(logging.INFO)
    rt = Runtime.from_settings(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(build_app(rt, roles), rt, stop=stop))  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        # The start-up lines follow "listening" with no await between them.
        while not any(r.getMessage() == "listening" for r in caplog.records):
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
    stop.set()
    await task
    return [r.getMessage() for r in caplog.records if r.name in ("parley.startup", "parley.http")]


async def test_start_up_names_the_file_the_sources_and_the_api(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(http=HttpSettings(port=0), config_file="/etc/parley/parley.toml", sources={
        "acme": SourceSettings(provider="natterly", auth_tokens=(TOKEN,)),
        "shop": SourceSettings(provider="chatshipper", secrets=(SECRET,))})
    api = Routes("/api/chats", "/api/chats/{id}", "/api/consumers")
    lines = await _start_and_stop(settings, [WEBHOOKS, api], caplog)
    [listening] = [r for r in caplog.records if r.getMessage() == "listening"]
    base = listening.url  # type: ignore[attr-defined]
    assert not base.endswith(":0")  # the port actually bound, not the configured 0
    assert "configuration file /etc/parley/parley.toml" in lines
    assert (f"webhooks: acme (natterly) {base}/webhooks/acme; "
            f"shop (chatshipper) {base}/webhooks/shop") in lines
    assert any(line.startswith(f"API at {base}/api/ (chats, consumers)") for line in lines)
    text = "\n".join(lines) + caplog.text
    assert TOKEN not in text and SECRET not in text


async def test_start_up_without_file_or_sources_says_so(caplog: pytest.LogCaptureFixture) -> None:
    lines = await _start_and_stop(Settings(http=HttpSettings(port=0)), [WEBHOOKS], caplog)
    assert any(line.startswith("no configuration file: embedded defaults") for line in lines)
    [warning] = [r for r in caplog.records if r.getMessage().startswith("no webhook sources")]
    assert warning.levelname == "WARNING"
    assert "answers 404 unknown_source until a [sources.NAME] table is added" in warning.getMessage()
    assert "README.md" in warning.getMessage()
    assert not any(line.startswith("API at") for line in lines)  # no API routes here


def test_the_api_description_alone_is_no_api(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    base = "http://127.0.0.1:8080"
    for paths, expected in (
            (("/api/openapi.json",), []),  # every process serves it: nothing to announce
            (("/api/openapi.json", "/api/agents"),
             [f"API at {base}/api/ (agents); described at {base}/api/openapi.json"])):
        caplog.clear()
        app = web.Application()
        Routes(*paths).install(app, Runtime.from_settings(Settings()))
        log_startup(Settings(), app, base)
        assert [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("API")] == expected


def test_a_taken_port_is_one_line_or_the_next_free_one(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as err:
            bind("127.0.0.1", port)
        assert str(err.value).startswith(f"cannot listen on 127.0.0.1:{port}: port {port} is "
                                         "in use")
        assert "\n" not in str(err.value)
        caplog.set_level(logging.WARNING)
        with bind("127.0.0.1", port, next_free_port=True) as sock:
            moved_to = sock.getsockname()[1]
        assert port < moved_to <= port + PORT_SEARCH
        [warning] = caplog.records
        assert warning.getMessage().startswith(f"port {port} is in use (by `parley run`?): "
                                               f"serving on port {moved_to} instead")


async def test_serve_reports_a_taken_port_before_any_role_starts() -> None:
    started: list[str] = []

    class Role:
        name = "role"

        def install(self, app: web.Application, rt: Runtime) -> None:
            async def lifetime(app: web.Application) -> AsyncIterator[None]:
                started.append("started")
                yield

            app.cleanup_ctx.append(lifetime)

    with socket.create_server(("127.0.0.1", 0)) as taken:
        rt = Runtime.from_settings(Settings(http=HttpSettings(port=taken.getsockname()[1])))
        with pytest.raises(ListenError):
            await serve(build_app(rt, [Role()]), rt, stop=asyncio.Event())
    assert started == []
