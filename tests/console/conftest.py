"""The console's browser tests: Debian's Chromium driven by Playwright, against one real
Parley (the roles of ``parley run``, in-process) on a real broker.

No Chromium is a failure, never a skip: ``make test`` installs it first (``make browser``)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from contracts.topics import Topics
from parley.console.app import CONSOLE, Console
from parley.process import assemble
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.role import ProjectorRole
from tests.kit.live_projector import TOKEN as NATTERLY_TOKEN
from tests.kit.live_projector import delete_dlq
from tests.kit.run_roles import quick_run_roles

API_TOKEN = "console-api-token-3f9a1c7e5b2d8046"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no Chromium: the console's browser tests need Debian's chromium "
                    "(`make test` installs it as root; else: sudo apt-get install -y chromium)",
                    pytrace=False)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Parley:
    """One running Parley: its base ``url``, its projector role, and a webhook poster."""

    url: str
    projector: ProjectorRole
    http: aiohttp.ClientSession
    prefix: str  # the topic prefix
    console: Console  # what its pages read (a test may change its bounds)

    async def post(self, body: bytes, source: str = "acme") -> str:
        """Post a webhook through the real receiver; the position of its 2xx."""
        async with self.http.post(f"{self.url}/webhooks/{source}", data=body,
                                  headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json()
            assert resp.status in (200, 202), answer
            return str(answer["position"])

    async def api(self, path: str) -> object:
        async with self.http.get(f"{self.url}{path}",
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.fixture
def parley_settings(kafka_settings: KafkaSettings, tmp_path: Path) -> Settings:
    """The settings :func:`parley` runs with (a test module may override this fixture)."""
    return Settings(
        kafka=kafka_settings, data_dir=str(tmp_path / "data"),
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        http=HttpSettings(api_tokens=(API_TOKEN,)),
        sources={"acme": SourceSettings(provider="natterly", auth_tokens=(NATTERLY_TOKEN,))})


@pytest.fixture
async def parley(kafka_settings: KafkaSettings, topics: Topics, parley_settings: Settings,
                 unique: str) -> AsyncIterator[Parley]:
    rt = Runtime.from_settings(parley_settings)
    roles = quick_run_roles(rt, unique, wait_s=10.0, recheck_s=0.1)
    server = TestServer(assemble(rt, roles))
    await server.start_server()
    projector = next(r for r in roles if isinstance(r, ProjectorRole))
    try:
        async with aiohttp.ClientSession() as http:
            yield Parley(str(server.make_url("")).rstrip("/"), projector, http,
                         kafka_settings.topic_prefix, server.app[CONSOLE])
    finally:
        await server.close()
        await delete_dlq(kafka_settings, topics)


async def log_in(page: Page, parley: Parley, path: str = "/console") -> None:
    """Open ``path``, which sends the browser to the login page, and log in there."""
    await page.goto(f"{parley.url}{path}")
    await page.get_by_label("API token").fill(API_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{parley.url}{path}")
