"""Agents and visitors in a real browser: state, chats, an agent's status history from its
webhooks, the agents list live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect

from tests.console.conftest import Parley, log_in
from tests.kit.live_projector import T0, natterly_body, natterly_user_status

pytestmark = pytest.mark.kafka


async def test_an_agents_status_history_and_the_live_list(
        browser: Browser, parley: Parley) -> None:
    await parley.post(natterly_user_status("ag-h", "online", T0))
    await parley.post(natterly_user_status("ag-h", "invisible", T0 + timedelta(minutes=5)))
    position = await parley.post(natterly_body("ChatAccepted", "pp-chat", T0 + timedelta(
        minutes=6), agent="ag-h", visitor="pp-vis"))
    await parley.api(f"/api/chats/pp-chat?min_position={position}")
    page = await browser.new_page()
    await log_in(page, parley, "/console/agents")
    row = page.locator('tr[data-agent="ag-h"]')
    await expect(row.locator("[data-status]")).to_have_text("invisible")
    await row.get_by_role("link", name="ag-h").click()
    history = page.locator("tr[data-history-status]")
    await expect(history).to_have_count(2, timeout=20_000)
    assert [await h.get_attribute("data-history-status") for h in await history.all()
            ] == ["online", "invisible"]
    await expect(page.locator('tr[data-chat="pp-chat"]')).to_be_visible()
    # The visitor of that chat: its page lists the chat.
    await page.goto(f"{parley.url}/console/visitors/pp-vis")
    await expect(page.locator('tr[data-chat="pp-chat"]')).to_be_visible()
    # The agents list follows the agent stream without a reload.
    await page.goto(f"{parley.url}/console/agents")
    await expect(page.locator("#agents-live")).to_have_text("live")
    await page.evaluate("window.parleyMarker = 1")
    await parley.post(natterly_user_status("ag-h", "offline", T0 + timedelta(minutes=9)))
    await expect(row.locator("[data-status]")).to_have_text("offline", timeout=20_000)
    assert await page.evaluate("window.parleyMarker") == 1
    # Unknown ones: 404 pages.
    answer = await page.goto(f"{parley.url}/console/agents/nobody")
    assert answer is not None and answer.status == 404
    answer = await page.goto(f"{parley.url}/console/visitors/nobody")
    assert answer is not None and answer.status == 404


async def test_a_long_status_history_is_paged(browser: Browser, parley: Parley) -> None:
    parley.console.timeline_page = 2  # five status webhooks: three pages
    statuses = ["online", "invisible", "online", "offline", "online"]
    for minute, status in enumerate(statuses):
        position = await parley.post(natterly_user_status("ag-p", status,
                                                          T0 + timedelta(minutes=minute)))
    await parley.api(f"/api/agents?min_position={position}")
    page = await browser.new_page()
    await log_in(page, parley, "/console/agents/ag-p")
    history = page.locator("tr[data-history-status]")
    await expect(history).to_have_count(2, timeout=20_000)
    await expect(page.locator("[data-history-range]").first).to_have_attribute(
        "data-history-range", "1-2")
    await expect(page.locator("[data-history-earlier]")).to_have_count(0)
    await page.locator("[data-history-later]").first.click()
    await page.wait_for_url(f"{parley.url}/console/agents/ag-p?page=2")
    await expect(page.locator("[data-history-range]").first).to_have_attribute(
        "data-history-range", "3-4")
    assert [await h.get_attribute("data-history-status") for h in await history.all()
            ] == ["online", "offline"]
    await page.locator("[data-history-later]").first.click()
    await page.wait_for_url(f"{parley.url}/console/agents/ag-p?page=3")
    await expect(history).to_have_count(1)
    await expect(page.locator("[data-history-later]")).to_have_count(0)
    answer = await page.request.get(f"{parley.url}/console/agents/ag-p/history?page=4")
    assert answer.status == 404
    answer = await page.request.get(f"{parley.url}/console/agents/ag-p/history?page=x")
    assert answer.status == 400


async def test_a_visitors_page_follows_its_changes_without_reload(
        browser: Browser, parley: Parley) -> None:
    position = await parley.post(natterly_body("ChatInitiated", "lv-chat-1", T0, visitor="lv-vis"))
    await parley.api(f"/api/chats/lv-chat-1?min_position={position}")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.url.endswith("/live") else None)
    await log_in(page, parley, "/console/visitors/lv-vis")
    await expect(page.locator('tr[data-chat="lv-chat-1"]')).to_be_visible()
    await expect(page.locator("#visitor-live")).to_have_text("live", timeout=20_000)
    await page.evaluate("window.parleyMarker = 1")  # gone if the page reloads
    # Another visitor's change: this page does not fetch itself again.
    other = await parley.post(natterly_body("ChatInitiated", "lv-other", T0, visitor="lv-else"))
    await parley.api(f"/api/chats/lv-other?min_position={other}")
    # Its own: a second chat appears.
    await parley.post(natterly_body("ChatInitiated", "lv-chat-2", T0 + timedelta(minutes=3),
                                    visitor="lv-vis"))
    await expect(page.locator('tr[data-chat="lv-chat-2"]')).to_be_visible(timeout=20_000)
    assert await page.evaluate("window.parleyMarker") == 1
    # Fetched when the stream opened and for its own change, not for the other visitor's.
    assert len(fetched) <= 2, fetched
    assert errors == []
