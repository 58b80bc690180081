"""The reports page in a real browser: webhooks posted through the real receiver for two
agents (initiated, accepted, closed with the agent's answer, rated), the page's table and live figures equal
to what the reports API answers, a chart per measure, the form used by keyboard, the live
figures updating without a reload, and bad input as 400 pages naming the parameter."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from parley.console.reports import CHARTS
from tests.console.conftest import Parley, log_in
from tests.console.test_browser_pages import HEIGHT, WIDTH, check
from tests.kit.live_projector import T0, natterly_body, natterly_user_status

pytestmark = pytest.mark.kafka

DAY1, DAY2 = T0, T0 + timedelta(days=1)  # 2026-03-01 and 02, 09:00 UTC
RANGE = "from=2026-03-01&to=2026-03-02"


def webhook(event: str, chat: str, at: datetime, *, started: datetime, agent: str | None = None,
            said: tuple[tuple[str, float], ...] = (), rating: str | None = None) -> bytes:
    """A Natterly chat webhook for ``chat`` initiated at ``started``, with messages ``said``
    (who, seconds after ``started``) and an optional rating."""
    status = "Closed" if event == "ChatRated" else None
    body: dict[str, Any] = orjson.loads(natterly_body(event, chat, at, agent=agent,
                                                      visitor=f"v-{chat}", status=status))
    body["payload"]["chat"]["initiated_at"] = int(started.timestamp())
    body["payload"]["chat"]["rating"] = rating
    body["payload"]["messages"] = [
        {"uuid": f"{chat}-m{n}", "chat": chat, "text": f"{who} says {n}", "event": False,
         "author": {"type": "Visitor" if who == "visitor" else "User", "name": who},
         "posted_by_visitor": who == "visitor",
         "created_at": int((started + timedelta(seconds=s)).timestamp()),
         "updated_at": int((started + timedelta(seconds=s)).timestamp())}
        for n, (who, s) in enumerate(said)]
    return orjson.dumps(body)


async def a_chat(parley: Parley, chat: str, agent: str, started: datetime, wait: float,
                 response: float, rating: str | None) -> str:
    """Initiated (the visitor writes), accepted after ``wait`` s, closed five minutes in
    with the agent's answer (``response`` s after the visitor wrote: Natterly sends a
    chat's messages with its webhooks, each with its own time), then rated."""
    asked = (("visitor", 0.0),)
    answered = (*asked, ("agent", response))
    await parley.post(webhook("ChatInitiated", chat, started, started=started, said=asked))
    await parley.post(webhook("ChatAccepted", chat, started + timedelta(seconds=wait),
                              started=started, agent=agent, said=asked))
    last = await parley.post(webhook("ChatClosed", chat, started + timedelta(minutes=5),
                                     started=started, agent=agent, said=answered))
    if rating is not None:
        last = await parley.post(webhook("ChatRated", chat, started + timedelta(minutes=6),
                                         started=started, agent=agent, said=answered,
                                         rating=rating))
    return last


async def tab_to(page: Page, target: Locator) -> None:
    """Tab until ``target`` has the focus (a date field's day, month and year take a Tab
    each in Chromium): at most four."""
    for _ in range(4):
        await page.keyboard.press("Tab")
        if await target.evaluate("e => e === document.activeElement"):
            return
    raise AssertionError(f"{target} not reached by Tab")


async def seed(parley: Parley) -> None:
    for agent in ("ag-ann", "ag-bo"):
        await parley.post(natterly_user_status(agent, "online", T0 - timedelta(hours=1)))
    await a_chat(parley, "rp-1", "ag-ann", DAY1, 20, 50, "Good")
    await a_chat(parley, "rp-2", "ag-bo", DAY1 + timedelta(hours=1), 40, 100, "Bad")
    await a_chat(parley, "rp-3", "ag-ann", DAY2, 30, 60, None)
    last = await parley.post(webhook("ChatInitiated", "rp-4", DAY2 + timedelta(hours=2),
                                     started=DAY2 + timedelta(hours=2),
                                     said=(("visitor", 0.0),)))  # waits
    await parley.api(f"/api/chats/rp-4?min_position={last}")


async def test_the_reports_page_draws_what_the_reports_api_answers(
        browser: Browser, parley: Parley) -> None:
    await seed(parley)
    by_agent: Any = await parley.api(f"/api/reports/chats?{RANGE}&group_by=agent")
    by_day: Any = await parley.api(f"/api/reports/chats?{RANGE}&group_by=day")
    live: Any = await parley.api("/api/reports/live")
    assert [g["key"] for g in by_agent["groups"]] == ["ag-ann", "ag-bo"], by_agent
    assert sum(g["chats"] for g in by_day["groups"]) == 4 and live["waiting"] == 1

    page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT},
                                  locale="en-US")  # the date fields: mm/dd/yyyy
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await log_in(page, parley, "/console/reports")
    # The default range (the last 30 days) has none of these chats: said, no empty chart.
    await expect(page.locator("[data-empty]")).to_have_text("No chats in this range.")
    await expect(page.locator("figure.chart")).to_have_count(0)
    await expect(page.locator('[data-live="waiting"]')).to_have_text(str(live["waiting"]))
    await expect(page.locator('[data-live="online"]')).to_have_text("2")

    # The form by keyboard: From, Tab, To, Tab, the grouping (typed), Tab, Enter.
    await page.get_by_label("From").focus()
    await page.keyboard.type("03012026")  # Chromium's date field takes the digits (mm dd yyyy)
    await tab_to(page, page.get_by_label("To"))
    await page.keyboard.type("03022026")
    await tab_to(page, page.get_by_label("Table by"))
    await page.keyboard.type("agent")
    await tab_to(page, page.get_by_role("button", name="Show"))
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{parley.url}/console/reports?{RANGE}&group_by=agent")

    # The table: the API's numbers, per agent, named as the agent's view names it.
    for group in by_agent["groups"]:
        row = page.locator(f'tr[data-group="{group["key"]}"]')
        agent = await parley.api(f"/api/agents/{group['key']}")
        await expect(row.locator("th a")).to_have_text(agent["name"])
        for field in ("chats", "missed", "abandoned", "rated", "transfers"):
            await expect(row.locator(f'[data-field="{field}"]')).to_have_text(str(group[field]))
        for name in ("wait_s", "first_response_s"):
            cell = row.locator(f'[data-measure="{name}"]')
            measure = group["measures"].get(name, {})
            for stat in ("median", "p90"):
                want = measure.get(stat)
                await expect(cell).to_have_attribute(f"data-{stat}",
                                                     "" if want is None else str(want))
    ann = next(g for g in by_agent["groups"] if g["key"] == "ag-ann")
    assert (ann["chats"], ann["rated"]) == (2, 1)
    assert ann["measures"]["first_response_s"]["median"] is not None

    # A chart per measure, each an SVG image Parley drew.
    for chart in CHARTS:
        figure = page.locator(f'figure.chart[data-chart="{chart.name}"]')
        await expect(figure.locator("img")).to_have_js_property("complete", True)
        width = await figure.locator("img").evaluate("img => img.naturalWidth")
        assert width > 0, chart.name
        src = await figure.locator("img").get_attribute("src")
        answer = await page.request.get(f"{parley.url}{src}")
        assert answer.status == 200 and answer.headers["content-type"] == "image/svg+xml"
        svg = await answer.text()
        assert "<svg" in svg and "kozea.github.io" not in svg, chart.name
        if chart.name.startswith("agent_"):  # bars labelled with the agents' names
            assert ">Agent ag-ann<" in svg and ">ag-ann<" not in svg, chart.name

    # By day: the API's numbers too.
    await page.goto(f"{parley.url}/console/reports?{RANGE}&group_by=day")
    for group in by_day["groups"]:
        row = page.locator(f'tr[data-group="{group["key"]}"]')
        await expect(row.locator('[data-field="chats"]')).to_have_text(str(group["chats"]))
        wait = group["measures"].get("wait_s", {}).get("median")
        await expect(row.locator('[data-measure="wait_s"]')).to_have_attribute(
            "data-median", "" if wait is None else str(wait))
    shots = os.environ.get("PARLEY_SCREENSHOTS")
    await check(page, "reports", Path(shots) if shots else None)  # fits 1280 px

    # The live figures follow without a reload.
    await page.evaluate("window.parleyMarker = 1")
    await parley.post(natterly_user_status("ag-bo", "offline", T0 + timedelta(days=2)))
    await expect(page.locator('[data-live="online"]')).to_have_text("1", timeout=20_000)
    assert await page.evaluate("window.parleyMarker") == 1
    assert problems == []

    # Bad input: a 400 page naming the parameter, never a 500.
    for query, named in (("from=2026-03-05&to=2026-03-01", "from (2026-03-05) is after to"),
                         ("from=2026-13-01", "from is not a calendar date"),
                         ("to=yesterday", "to must be a date"),
                         ("group_by=week", "group_by must be one of")):
        for path in ("/console/reports", "/console/reports/charts/chats.svg"):
            answer = await page.goto(f"{parley.url}{path}?{query}")
            assert answer is not None and answer.status == 400, (path, query)
            await expect(page.locator("main")).to_contain_text(named)
    answer = await page.goto(f"{parley.url}/console/reports/charts/nothing.svg")
    assert answer is not None and answer.status == 404
