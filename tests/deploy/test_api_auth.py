"""Bearer tokens for the read API and admin endpoints (``http.api_tokens``).

Open when no token is configured, on a loopback address only: on one the network can reach,
a process that would serve ``/api/*`` or ``/metrics`` without tokens refuses to start unless
``http.allow_open_api`` says so. With tokens, everything but the health probes, the API
description, the webhooks (which authenticate per source) and, optionally, ``/metrics``
needs one of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from parley.cli import main
from parley.errors import SettingsError
from parley.http import build_app, json_response
from parley.process import assemble
from parley.run import run_roles
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings

OLD = "old-token-4f2b8c0e9a1d7e63"
NEW = "new-token-0b9c3e7d1f5a2c84"
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly" / "chat_initiated_seed.json"
SEED_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"


class FakeRole:
    """Routes shaped like the real ones: a read API, an admin action, a webhook."""

    name = "fake"

    def install(self, app: web.Application, rt: Runtime) -> None:
        async def things(request: web.Request) -> web.Response:
            return json_response({"items": []})

        async def admin(request: web.Request) -> web.Response:
            return json_response({"reset": True})

        async def webhook(request: web.Request) -> web.Response:
            # The webhook's own authentication, unrelated to bearer tokens.
            if request.headers.get("X-Hub-Signature") != "sha1=good":
                return json_response({"error": "unauthorized", "detail": "bad signature"}, 401)
            return json_response({"event_id": "e1"}, 202)

        app.router.add_get("/api/things", things)
        app.router.add_post("/admin/reset", admin)
        app.router.add_post("/webhooks/{source}", webhook)


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(http: HttpSettings) -> aiohttp.ClientSession:
        rt = Runtime.from_settings(Settings(http=http))
        server = TestServer(build_app(rt, [FakeRole()]))
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession(base_url=str(server.make_url("/")))
        sessions.append(session)
        return session

    yield make
    for s in sessions:
        await s.close()
    for server in servers:
        await server.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_tokens_everything_is_open(client_for) -> None:  # type: ignore[no-untyped-def]
    http = await client_for(HttpSettings())
    for method, path in (("GET", "/api/things"), ("POST", "/admin/reset"), ("GET", "/metrics"),
                         ("GET", "/healthz")):
        async with http.request(method, path) as resp:
            assert resp.status == 200, path


async def test_tokens_guard_api_admin_and_metrics(client_for) -> None:  # type: ignore[no-untyped-def]
    http = await client_for(HttpSettings(api_tokens=(OLD, NEW)))
    for method, path in (("GET", "/api/things"), ("POST", "/admin/reset"), ("GET", "/metrics")):
        async with http.request(method, path) as resp:
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="parley"'
            body = await resp.json()
            assert body["error"] == "unauthorized" and "Bearer" in body["detail"]
        async with http.request(method, path, headers=bearer("x" * 26)) as resp:
            assert resp.status == 401, path
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
            assert (await resp.json())["error"] == "unauthorized"
        for token in (OLD, NEW):  # both valid during a rotation
            async with http.request(method, path, headers=bearer(token)) as resp:
                assert resp.status == 200, path
    # Scheme is case-insensitive (RFC 7235); other schemes and near-misses are refused.
    async with http.get("/api/things", headers={"Authorization": f"bearer {NEW}"}) as resp:
        assert resp.status == 200
    for header in (f"Basic {NEW}", f"Bearer {NEW[:-1]}", f"Bearer {NEW}x", "Bearer "):
        async with http.get("/api/things", headers={"Authorization": header}) as resp:
            assert resp.status == 401, header


async def test_probes_stay_open_and_unknown_paths_say_nothing(client_for) -> None:  # type: ignore[no-untyped-def]
    http = await client_for(HttpSettings(api_tokens=(NEW,)))
    for path in ("/healthz", "/readyz"):
        async with http.get(path) as resp:
            assert resp.status == 200, path
    async with http.get("/api/nothing-here") as resp:
        assert resp.status == 401  # not 404: routes are not discoverable without a token
    async with http.get("/api/nothing-here", headers=bearer(NEW)) as resp:
        assert resp.status == 404
    # Dot segments and encodings cannot borrow the webhook exemption.
    for path in ("/webhooks/../api/things", "/webhooks/%2e%2e/api/things"):
        async with http.get(path) as resp:
            assert resp.status == 401, path


async def test_webhooks_keep_their_own_authentication(client_for) -> None:  # type: ignore[no-untyped-def]
    http = await client_for(HttpSettings(api_tokens=(NEW,)))
    async with http.post("/webhooks/shop", headers={"X-Hub-Signature": "sha1=good"}) as resp:
        assert resp.status == 202  # no bearer token needed
    async with http.post("/webhooks/shop", headers=bearer(NEW)) as resp:
        assert resp.status == 401  # and a bearer token does not replace the signature
        assert (await resp.json())["detail"] == "bad signature"


async def test_metrics_can_be_left_public(client_for) -> None:  # type: ignore[no-untyped-def]
    http = await client_for(HttpSettings(api_tokens=(NEW,), metrics_public=True))
    async with http.get("/metrics") as resp:
        assert resp.status == 200
    async with http.get("/api/things") as resp:
        assert resp.status == 401


async def test_tokens_never_reach_logs_or_bodies(client_for, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    http = await client_for(HttpSettings(api_tokens=(OLD, NEW)))
    wrong = "wrong-token-7d1e0c4b2a9f"
    async with http.get("/api/things", headers=bearer(wrong)) as resp:
        text = await resp.text()
    for secret in (OLD, NEW, wrong):
        assert secret not in text and secret not in caplog.text


class WebhookOnlyRole:
    """A receiver's shape: webhooks, nothing under /api."""

    name = "webhooks"

    def install(self, app: web.Application, rt: Runtime) -> None:
        async def webhook(request: web.Request) -> web.Response:
            return json_response({"event_id": "e1"}, 202)

        app.router.add_post("/webhooks/{source}", webhook)


NETWORK_HOSTS = ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "fe80::1", "parley.example.net", ""]  # noqa: S104
LOOPBACK_HOSTS = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]


@pytest.mark.parametrize("host", NETWORK_HOSTS)
def test_an_open_api_on_a_network_address_is_refused(host: str) -> None:
    for http in (HttpSettings(host=host), HttpSettings(host=host, metrics_public=True)):
        rt = Runtime.from_settings(Settings(http=http))
        with pytest.raises(SettingsError) as err:
            build_app(rt, [FakeRole()])
        message = str(err.value)
        assert "/api/things" in message and "http.allow_open_api = true" in message, message
        assert "PARLEY_HTTP__API_TOKENS" in message and "\n" not in message
    # /metrics alone is exposed too (a receiver's only guarded route).
    with pytest.raises(SettingsError, match=r"refusing to serve /metrics on "):
        build_app(Runtime.from_settings(Settings(http=HttpSettings(host=host))), [WebhookOnlyRole()])


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_an_open_api_on_loopback_is_allowed(host: str) -> None:
    build_app(Runtime.from_settings(Settings(http=HttpSettings(host=host))), [FakeRole()])


async def test_the_opt_out_and_tokens_allow_serving_on_the_network(
        client_for, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    everywhere = "0.0.0.0"  # noqa: S104
    # Tokens: guarded, so allowed anywhere.
    build_app(Runtime.from_settings(Settings(http=HttpSettings(host=everywhere, api_tokens=(NEW,)))),
              [FakeRole()])
    # A receiver with a public /metrics exposes nothing that needs a token.
    build_app(Runtime.from_settings(Settings(http=HttpSettings(host=everywhere, metrics_public=True))),
              [WebhookOnlyRole()])
    # The explicit opt-out: served open, with a warning saying so.
    caplog.set_level(logging.WARNING, logger="parley.http")
    http = await client_for(HttpSettings(host=everywhere, allow_open_api=True))
    async with http.get("/api/things") as resp:
        assert resp.status == 200
    assert "http.allow_open_api = true" in caplog.text and "/api/things" in caplog.text


def test_parley_run_refuses_an_open_api_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in [n for n in os.environ if n.startswith("PARLEY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "parley.toml"
    # A bootstrap nobody answers: even a regression could not start a local broker here.
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[kafka]\nbootstrap = "127.0.0.1:1"\n'
                      '[http]\nhost = "0.0.0.0"\nport = 0\n')
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("parley: error: refusing to serve /api/* on 0.0.0.0") and "\n" not in err
    assert "http.allow_open_api = true" in err
    assert not (tmp_path / "data").exists()  # no broker, no store, nothing written


@pytest.mark.kafka
@pytest.mark.slow
async def test_real_roles_read_api_needs_token_webhook_does_not(
        kafka_settings: KafkaSettings, topics: object, tmp_path: Path) -> None:
    settings = Settings(kafka=kafka_settings, http=HttpSettings(api_tokens=(OLD, NEW)),
                        data_dir=str(tmp_path / "data"),
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                        sources={"acme": SourceSettings(provider="natterly",
                                                        auth_tokens=(SEED_TOKEN,))})
    rt = Runtime.from_settings(settings)
    server = TestServer(assemble(rt, run_roles(rt)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("/")),
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post("/webhooks/acme", data=SEED.read_bytes(),
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status in (200, 201, 202), await resp.text()
                position = (await resp.json())["position"]
            chat = "/api/chats/287146e8-68fd-43c5-b79a-911058bc1c9c"
            for path in (chat, "/api/chats", "/api/agents", "/api/consumers", "/api/search?q=x"):
                async with http.get(path) as resp:
                    assert resp.status == 401, path
            async with http.get(chat, params={"min_position": position},
                                headers=bearer(OLD)) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["source"] == "acme"
            async with http.get("/api/consumers", headers=bearer(NEW)) as resp:
                assert resp.status == 200
            async with http.get("/readyz") as resp:
                assert resp.status in (200, 503)  # open either way: never a 401
    finally:
        await server.close()
