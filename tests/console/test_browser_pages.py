"""Every console page in a real browser at 1280 x 800: no horizontal scrolling, reachable by
keyboard (skip link, navigation by Tab and Enter), no script error or CSP violation.

With ``PARLEY_SCREENSHOTS=DIR`` the test also saves a screenshot of each page into DIR
(``docs/console/`` holds the ones docs/console.md shows)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.console.conftest import Parley, log_in
from tests.kit.live_projector import T0, natterly_body, natterly_user_status

pytestmark = pytest.mark.kafka

WIDTH, HEIGHT = 1280, 800


async def seed(parley: Parley) -> None:
    """A few chats in several states, two agents with a status history."""
    for i, agent in enumerate(("ag-ann", "ag-bo")):
        await parley.post(natterly_user_status(agent, "online", T0 + timedelta(minutes=i)))
    last = ""
    for n in range(6):
        chat, at = f"demo-chat-{n}", T0 + timedelta(minutes=10 * n)
        msgs = [(f"{chat}-m0", "Hello, my order has not arrived yet.", at),
                (f"{chat}-m1", "Let me check that for you.", at + timedelta(seconds=40))]
        agent = ("ag-ann", "ag-bo")[n % 2]
        last = await parley.post(natterly_body("ChatInitiated", chat, at, visitor=f"vis-{n}",
                                               messages=msgs[:1], status="Initiated"))
        if n % 3:
            last = await parley.post(natterly_body("ChatAccepted", chat, at + timedelta(
                seconds=30), agent=agent, visitor=f"vis-{n}", messages=msgs))
        if n % 3 == 2:
            last = await parley.post(natterly_body("ChatClosed", chat, at + timedelta(
                minutes=5), agent=agent, visitor=f"vis-{n}", messages=msgs))
    await parley.post(natterly_user_status("ag-bo", "invisible", T0 + timedelta(hours=1)))
    await parley.api(f"/api/chats/demo-chat-5?min_position={last}")


def screenshots() -> Path | None:
    """Where to save screenshots (``PARLEY_SCREENSHOTS``, created), or None."""
    shots = Path(os.environ["PARLEY_SCREENSHOTS"]) if os.environ.get("PARLEY_SCREENSHOTS") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    return shots


async def check(page: Page, name: str, shots: Path | None) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= WIDTH, f"{name}: {overflow} px wide at {WIDTH} px"
    if shots is not None:
        await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


async def test_every_page_fits_1280_px_and_works_by_keyboard(
        browser: Browser, parley: Parley) -> None:
    shots = screenshots()
    await seed(parley)
    page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(f"{parley.url}/console")
    await check(page, "login", shots)
    await log_in(page, parley)
    await expect(page.locator('[data-count="chat"]')).to_have_text("6")
    await expect(page.locator('tr[data-group="projector"] [data-status]')).to_have_text(
        "caught up", timeout=20_000)
    await check(page, "overview", shots)
    # Keyboard: the first Tab is the skip link, which moves focus to the content; the
    # navigation is reached by Tab and followed by Enter.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    await page.locator("a.brand").focus()
    for _ in range(2):  # Parley, Overview, Chats
        await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Chats", exact=True)).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{parley.url}/console/chats")
    await expect(page.locator("tr[data-chat]")).to_have_count(6)
    await check(page, "chats", shots)
    await page.goto(f"{parley.url}/console/chats/demo-chat-5")
    await expect(page.locator(".timeline-entry")).to_have_count(3, timeout=20_000)
    for details in await page.locator(".timeline-entry").nth(1).locator("details").all():
        await details.locator("summary").click()  # open: the screenshot shows what is inside
    await check(page, "chat", shots)
    await page.goto(f"{parley.url}/console/agents")
    await expect(page.locator("tr[data-agent]")).to_have_count(2)
    await check(page, "agents", shots)
    await page.goto(f"{parley.url}/console/agents/ag-bo")
    await expect(page.locator("tr[data-history-status]")).to_have_count(2, timeout=20_000)
    await check(page, "agent", shots)
    await page.goto(f"{parley.url}/console/visitors/vis-5")
    await expect(page.locator('tr[data-chat="demo-chat-5"]')).to_be_visible()
    await check(page, "visitor", shots)
    assert problems == []
