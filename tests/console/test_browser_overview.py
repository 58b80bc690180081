"""The overview in a real browser: login through the page, panels that update live."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.console.conftest import Parley, log_in
from tests.kit.live_projector import T0, natterly_body

pytestmark = pytest.mark.kafka


async def test_login_then_the_overview_counts_a_new_chat_without_reload(
        browser: Browser, parley: Parley) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await log_in(page, parley)
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    chats = page.locator('[data-count="chat"]')
    await expect(chats).to_have_text("0")
    await page.evaluate("window.parleyMarker = 1")  # gone if the page reloads
    await parley.post(natterly_body("ChatInitiated", "ov-chat-1", T0, visitor="ov-vis"))
    await expect(chats).to_have_text("1", timeout=20_000)
    # Counted by the receiver (per source) and in Kafka (per topic), lag per group.
    await expect(page.locator('[data-source="acme"] [data-accepted]')).to_have_text("1")
    topic = f"{parley.prefix}.events.chat"
    await expect(page.locator(f'[data-appended="{topic}"]')).to_have_text("1")
    await expect(page.locator(f'[data-topic="{topic}"] [data-end]')).to_have_text("1")
    projector = page.locator('tr[data-group="projector"]')
    await expect(projector.locator("[data-lag]")).to_have_text("0")
    await expect(projector.locator("[data-status]")).to_have_text("caught up")
    assert await page.evaluate("window.parleyMarker") == 1
    assert errors == []  # no CSP violation, no script error
