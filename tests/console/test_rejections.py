"""Rejected webhooks in the console (parley/console/rejections.py, rejection_log.py): the
reader's counts and latest rows, and a real browser seeing a rejection within seconds, with
its reason and without the secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from playwright.async_api import Browser, expect

from contracts.ops import Rejection, encode_rejection
from contracts.topics import Topics
from parley.console.rejection_log import read_rejections
from parley.kafka.clients import make_producer
from parley.kafka.topics import ensure_topics
from parley.settings import KafkaSettings
from tests.console import test_session
from tests.console.conftest import API_TOKEN, Parley, log_in
from tests.console.test_browser_pages import HEIGHT, WIDTH, check, screenshots
from tests.kit.live_projector import T0, natterly_body
from tests.kit.live_projector import TOKEN as NATTERLY_TOKEN

pytestmark = pytest.mark.kafka


async def test_the_reader_counts_the_last_hour_and_keeps_the_latest_per_source(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    assert not (await read_rejections(kafka_settings, topics)).exists
    now = datetime.now(UTC)

    def r(source: str, reason: str, ago_s: float, count: int = 1) -> Rejection:
        return Rejection(source=source, status=401, error="unauthorized", reason=reason,
                         at=now - timedelta(seconds=ago_s), count=count, sampled=count == 1)

    written = [r("acme", "no_matching_secret", 7200),  # before the hour: listed, not counted
               *(r("acme", "no_matching_secret", 600 - i) for i in range(5)),
               r("shop", "missing_header", 300),
               r("acme", "no_matching_secret", 200, count=40),  # a summary of 40
               r("shop", "missing_header", 100)]
    await ensure_topics(kafka_settings, [topics.ops_specs()[0]])
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        for rec in written:
            await producer.send_and_wait(topics.rejections, encode_rejection(rec),
                                         key=rec.source.encode(),
                                         timestamp_ms=int(rec.at.timestamp() * 1000))
        await producer.send_and_wait(topics.rejections, b"not a record")  # skipped
    finally:
        await producer.stop()
    report = await read_rejections(kafka_settings, topics, per_source=3, now=now)
    assert report.exists and report.complete
    assert report.counts == {("acme", 401, "no_matching_secret"): 45,
                             ("shop", 401, "missing_header"): 2}
    assert report.total == 47
    assert [x.at for x in report.latest["acme"]] == [written[7].at, written[5].at, written[4].at]
    assert [x.count for x in report.latest["acme"]] == [40, 1, 1]
    assert [x.at for x in report.latest["shop"]] == [written[8].at, written[6].at]


async def test_a_wrong_token_shows_on_the_rejections_page_within_seconds_without_the_secret(
        browser: Browser, parley: Parley) -> None:
    page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await log_in(page, parley, "/console/rejections")
    await expect(page.get_by_role("heading", name="Rejected webhooks", level=1)).to_be_visible()
    await page.evaluate("window.parleyMarker = 1")  # gone if the page reloads
    guessed = "guessed-natterly-token-5d7c1e9a"
    body = orjson.loads(natterly_body("ChatInitiated", "rj-chat", T0))
    body["auth_token"] = guessed
    async with parley.http.post(f"{parley.url}/webhooks/acme", data=orjson.dumps(body),
                                headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 401
    row = page.locator('table.rejections[data-source="acme"] tr.rejection').first
    await expect(row).to_contain_text("no_matching_secret", timeout=10_000)
    await expect(row).to_contain_text("auth_token")  # which member was checked, not its value
    assert await page.evaluate("window.parleyMarker") == 1
    await check(page, "rejections", screenshots())
    html = await page.content()
    for secret in (guessed, NATTERLY_TOKEN, API_TOKEN):
        assert secret not in html
    # The overview's panel counts it per source and reason.
    await page.goto(f"{parley.url}/console")
    panel = page.locator('[data-panel="/console/panels/rejections"]')
    await expect(panel.locator('tr[data-source="acme"][data-reason="no_matching_secret"]')
                 ).to_contain_text("1")
    assert errors == []


# The console's own unreachable-Kafka app (tests/console/test_session.py).
client = test_session.client


@pytest.mark.parametrize("path", ["/console/rejections", "/console/deadletters",
                                  "/console/deadletters/crm"])
async def test_with_kafka_down_the_pages_say_so_never_a_500(
        client: test_session.Client, path: str) -> None:
    http = await client()
    await test_session.login(http)
    async with http.get(path) as resp:
        assert resp.status == 503
        assert "down" in await resp.text()
    async with http.get("/console/panels/rejections") as resp:
        assert resp.status == 200 and 'data-state="down"' in await resp.text()
