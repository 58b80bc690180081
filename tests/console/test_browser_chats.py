"""Chats in a real browser: the list with its filters, a chat's timeline (every webhook, its
domain events, the state after each, the groups' marks), live without reload."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect

from tests.console.conftest import Parley, log_in
from tests.kit.live_projector import T0, eventually, natterly_body

pytestmark = pytest.mark.kafka


async def test_a_chats_timeline_shows_each_webhook_and_grows_live(
        browser: Browser, parley: Parley) -> None:
    chat = "tl-chat-1"
    msgs = [(f"{chat}-m0", "first words", T0)]
    await parley.post(natterly_body("ChatInitiated", chat, T0, visitor="tl-vis",
                                    messages=msgs, status="Initiated"))
    position = await parley.post(natterly_body("ChatAccepted", chat, T0 + timedelta(seconds=5),
                                               agent="ag-7", visitor="tl-vis"))
    await parley.api(f"/api/chats/{chat}?min_position={position}")
    page = await browser.new_page()
    await log_in(page, parley, "/console/chats")
    row = page.locator(f'tr[data-chat="{chat}"]')
    await expect(row.locator("[data-status]")).to_have_text("active")
    await row.get_by_role("link", name=chat).click()
    await page.wait_for_url(f"{parley.url}/console/chats/{chat}")
    entries = page.locator(".timeline-entry")
    await expect(entries).to_have_count(2, timeout=20_000)
    first, second = entries.nth(0), entries.nth(1)
    await expect(first.locator("h3")).to_contain_text("ChatInitiated")
    await expect(second.locator("h3")).to_contain_text("ChatAccepted")
    # The body as stored: Natterly's auth_token is not in it, nor anywhere on the page.
    assert "first words" in (await first.locator("details pre").first.text_content() or "")
    assert "natterly-test-token" not in await page.content()
    # The state after each webhook is the fold of the prefix: waiting, then active.
    states = page.locator("[data-state-after]")
    assert '"status": "waiting"' in (await states.nth(0).text_content() or "")
    assert '"status": "active"' in (await states.nth(1).text_content() or "")
    # The projector has committed past both records.
    await expect(first.locator('[data-group="projector"]')).to_have_attribute("data-mark", "passed")
    # Live: a new webhook appears without a reload.
    await page.evaluate("window.parleyMarker = 1")
    await parley.post(natterly_body("ChatClosed", chat, T0 + timedelta(seconds=30),
                                    agent="ag-7", visitor="tl-vis", messages=msgs))
    await expect(entries).to_have_count(3, timeout=20_000)
    await expect(entries.nth(2).locator("h3")).to_contain_text("ChatClosed")
    assert await page.evaluate("window.parleyMarker") == 1


async def test_chat_list_filters_and_bad_input(browser: Browser, parley: Parley) -> None:
    await parley.post(natterly_body("ChatInitiated", "fl-open", T0, visitor="v1"))
    position = await parley.post(natterly_body("ChatClosed", "fl-closed", T0, visitor="v2"))
    await parley.api(f"/api/chats/fl-closed?min_position={position}")
    page = await browser.new_page()
    await log_in(page, parley, "/console/chats")
    await page.get_by_label("Status").select_option("closed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr[data-chat]")).to_have_count(1)
    await expect(page.locator('tr[data-chat="fl-closed"]')).to_be_visible()
    # Malformed parameters: a 400 page; an unknown chat: a 404 page.
    answer = await page.goto(f"{parley.url}/console/chats?status=nope")
    assert answer is not None and answer.status == 400
    await expect(page.get_by_role("alert")).to_contain_text("status must be one of")
    answer = await page.goto(f"{parley.url}/console/chats?limit=0")
    assert answer is not None and answer.status == 400
    answer = await page.goto(f"{parley.url}/console/chats?cursor=garbage")
    assert answer is not None and answer.status == 400
    answer = await page.goto(f"{parley.url}/console/chats/no-such-chat")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("alert")).to_contain_text("no chat")
    answer = await page.goto(f"{parley.url}/console/chats?q=a")  # a one-letter prefix
    assert answer is not None and answer.status == 400


async def test_full_text_search_finds_a_chat_by_its_messages(
        browser: Browser, parley: Parley) -> None:
    words = [("fts-m0", "my teapot arrived broken", T0)]
    await parley.post(natterly_body("ChatInitiated", "fts-chat", T0, visitor="v3",
                                    messages=words, status="Initiated"))
    page = await browser.new_page()
    await log_in(page, parley, "/console/chats")

    async def found() -> bool:  # the search consumer indexes the chat's state a moment later
        await page.goto(f"{parley.url}/console/chats?q=teapot")
        return await page.locator('tr[data-chat="fts-chat"]').count() == 1

    await eventually(found, "the chat in the search results", timeout_s=30, every_s=0.5)
    await expect(page.locator("tr[data-chat] .snippet mark")).to_have_text("teapot")


async def test_a_long_timeline_is_paged_and_each_page_has_the_states_of_the_whole_prefix(
        browser: Browser, parley: Parley) -> None:
    parley.console.timeline_page = 2  # five webhooks: three pages
    chat = "pg-chat"
    await parley.post(natterly_body("ChatInitiated", chat, T0, visitor="pg-vis", status="Initiated",
                                    messages=[(f"{chat}-m0", "hello", T0)]))
    for minute in (1, 2, 3):
        await parley.post(natterly_body("ChatAccepted", chat, T0 + timedelta(minutes=minute),
                                        agent=f"ag-{minute}", visitor="pg-vis"))
    position = await parley.post(natterly_body("ChatClosed", chat, T0 + timedelta(minutes=9),
                                               agent="ag-3", visitor="pg-vis"))
    await parley.api(f"/api/chats/{chat}?min_position={position}")
    page = await browser.new_page()
    await log_in(page, parley, f"/console/chats/{chat}")
    entries = page.locator(".timeline-entry")
    await expect(entries).to_have_count(2, timeout=20_000)
    await expect(page.locator("[data-timeline-range]").first).to_have_attribute(
        "data-timeline-range", "1-2")
    await expect(page.locator("[data-timeline-earlier]")).to_have_count(0)
    await page.locator("[data-timeline-later]").first.click()
    await page.wait_for_url(f"{parley.url}/console/chats/{chat}?page=2")
    await expect(page.locator("[data-timeline-range]").first).to_have_attribute(
        "data-timeline-range", "3-4")
    await expect(entries.nth(0).locator("h3")).to_contain_text("ChatAccepted")
    # The state after a record of page 2 is the fold of everything before it: the message
    # of page 1's first webhook, the agent of page 2's second.
    after = await entries.nth(1).locator("[data-state-after]").text_content() or ""
    assert '"message_count": 1' in after and '"ag-3"' in after, after
    await page.locator("[data-timeline-later]").first.click()
    await page.wait_for_url(f"{parley.url}/console/chats/{chat}?page=3")
    await expect(entries).to_have_count(1)
    await expect(entries.nth(0).locator("h3")).to_contain_text("ChatClosed")
    assert '"status": "closed"' in (
        await entries.nth(0).locator("[data-state-after]").text_content() or "")
    await expect(page.locator("[data-timeline-later]")).to_have_count(0)
    await page.locator("[data-timeline-earlier]").first.click()
    await page.wait_for_url(f"{parley.url}/console/chats/{chat}?page=2")
    await expect(page.locator("[data-timeline-range]").first).to_have_attribute(
        "data-timeline-range", "3-4")
    # No such page: 404; not a page number: 400.
    answer = await page.request.get(f"{parley.url}/console/chats/{chat}/timeline?page=4")
    assert answer.status == 404
    answer = await page.goto(f"{parley.url}/console/chats/{chat}?page=0")
    assert answer is not None and answer.status == 400
