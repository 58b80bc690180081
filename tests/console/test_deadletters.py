"""The dead-letter pages (parley/console/deadletters.py) on one real Parley with the ``crm``
group sending to a stand-in CRM that refuses one chat: list, confirm, skip or replay from the
console; each action once per id, audited without a secret; replayed from a real browser,
the group catches up."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import msgspec
import pytest
from aiokafka import TopicPartition
from playwright.async_api import Browser, expect

from consumers.dlq_ops import dlq_entries
from contracts.ops import decode_audit
from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.settings import KafkaSettings, Settings
from tests.console.conftest import API_TOKEN, Parley, log_in
from tests.console.test_browser_pages import HEIGHT, WIDTH, check, screenshots
from tests.kit.crm_standin import SECRET, TOKEN, RunningStandIn, StandInCrm
from tests.kit.live_projector import T0, eventually, natterly_body
from tests.kit.live_projector import TOKEN as NATTERLY_TOKEN

pytestmark = pytest.mark.kafka

DOOMED = "dl-chat-doomed"


@pytest.fixture
async def crm() -> AsyncIterator[RunningStandIn]:
    """A stand-in CRM that answers 400 to the activity of chat :data:`DOOMED` until the test
    clears ``crm.always``."""
    standin = StandInCrm()
    standin.always.append((lambda doc: doc.get("external_id") == DOOMED, "400"))
    async with RunningStandIn(standin) as running:
        yield running


@pytest.fixture
def parley_settings(parley_settings: Settings, crm: RunningStandIn) -> Settings:
    """The console tests' Parley (``parley`` fixture) with the ``crm`` group configured."""
    return msgspec.structs.replace(parley_settings, consumers={"crm": {
        "base_url": crm.url, "auth_value": TOKEN, "signing_secret": SECRET, "max_attempts": 2,
        "max_delay_s": 0.2, "timeout_s": 2.0}})


async def _dead_letter(parley: Parley, kafka: KafkaSettings, topics: Topics) -> None:
    """Close chat DOOMED (the CRM refuses its activity) and wait for its dead letter."""
    await parley.post(natterly_body("ChatInitiated", DOOMED, T0, visitor="dl-vis"))
    await parley.post(natterly_body("ChatClosed", DOOMED, T0 + timedelta(minutes=5),
                                    visitor="dl-vis", status="Closed"))

    async def dead() -> bool:
        return any(e.key == DOOMED and e.kind == "dead"
                   for e in await dlq_entries(kafka, topics, "crm"))

    await eventually(dead, "the doomed chat's dead letter", timeout_s=40)


async def _login(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/console/login") as resp:
        csrf = _csrf(await resp.text())
    async with http.post(f"{base}/console/login", data={"token": API_TOKEN, "csrf": csrf,
                                                        "next": "/console"}) as resp:
        assert resp.status == 200


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


async def _audit(kafka: KafkaSettings, topics: Topics) -> list[bytes]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topics.audit, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            values += [r.value or b"" for r in (await consumer.getmany(tp, timeout_ms=500)
                                                ).get(tp, [])]
        return values
    finally:
        await consumer.stop()


async def test_skip_is_confirmed_done_once_per_action_id_and_audited_without_a_secret(
        parley: Parley, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await _dead_letter(parley, kafka_settings, topics)
    base = parley.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, base)
        async with http.get(f"{base}/console/deadletters") as resp:
            page = await resp.text()
            assert resp.status == 200
            assert 'data-group="projector"' in page and 'data-group="crm"' in page
            # Its closed state and its events (the contact's chat) both failed; a later
            # event of the chat is parked behind them.
            assert re.search(r'data-group="crm">.*?data-dead="2"', page, re.S)
        async with http.get(f"{base}/console/deadletters/crm") as resp:
            page = await resp.text()
            assert DOOMED in page and "CrmRejected" in page
        for unknown in ("/console/deadletters/nosuch", "/console/deadletters/no%20such",
                        "/console/deadletters/nosuch/confirm?action=skip"):
            async with http.get(f"{base}{unknown}") as resp:
                assert resp.status == 404, (unknown, resp.status)
                assert "no consumer group" in await resp.text()
        async with http.get(f"{base}/console/deadletters/crm/confirm",
                            params={"action": "skip", "key": DOOMED}) as resp:
            confirm = await resp.text()
        form = {"csrf": _csrf(confirm), "action_id": _hidden(confirm, "action_id"),
                "upto": _hidden(confirm, "upto"), "key": DOOMED}
        # Without the CSRF token: refused, nothing done.
        async with http.post(f"{base}/console/deadletters/crm/skip",
                             data=form | {"csrf": "0" * 64}) as resp:
            assert resp.status == 403
        assert {e.key for e in await dlq_entries(kafka_settings, topics, "crm")} == {DOOMED}
        # Twice with one action id (a double click): one skip, one audit record.
        for _ in range(2):
            async with http.post(f"{base}/console/deadletters/crm/skip", data=form) as resp:
                assert resp.status == 200
                assert resp.url.path == f"/console/deadletters/crm/actions/{form['action_id']}"
                done = await resp.text()
                assert 'data-outcome="done"' in done and "skipped 3 entries" in done
        assert await dlq_entries(kafka_settings, topics, "crm") == []
        # A malformed or stale action id changes nothing.
        async with http.post(f"{base}/console/deadletters/crm/skip",
                             data=form | {"action_id": "0000000000001-00000000deadbeef"}) as resp:
            assert resp.status == 400 and "expired" in await resp.text()
    records = await _audit(kafka_settings, topics)
    [record] = [decode_audit(v) for v in records]
    assert (record.action, record.outcome, record.target["group"], record.target["key"]) == (
        "dlq.skip", "done", "crm", DOOMED)
    assert record.actor.startswith("token sha256:") and len(record.actor) == len("token sha256:") + 8
    blob = b"".join(records)
    for secret in (API_TOKEN, TOKEN, SECRET, NATTERLY_TOKEN):
        assert secret.encode() not in blob


async def test_a_dead_letter_is_replayed_from_the_browser_and_the_group_catches_up(
        browser: Browser, parley: Parley, crm: RunningStandIn,
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    await _dead_letter(parley, kafka_settings, topics)
    page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await log_in(page, parley, "/console/deadletters")
    await expect(page.locator('[data-group="crm"] [data-dead]')).to_have_text("2")
    await check(page, "deadletters", screenshots())
    await page.get_by_role("link", name="crm").click()
    dead = page.locator(f'tr[data-key="{DOOMED}"][data-kind="dead"]')
    await expect(dead.first).to_contain_text("CrmRejected")
    await check(page, "deadletters-group", screenshots())
    crm.crm.always.clear()  # the CRM accepts the chat now
    await page.get_by_role("link", name=f"Replay key {DOOMED}").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Replay dead letters")
    await check(page, "deadletters-confirm", screenshots())
    await page.get_by_role("button", name=re.compile("Confirm: replay 3 entries")).click()
    await expect(page.get_by_role("status")).to_contain_text("replayed 3 event(s)")
    assert any(a.get("external_id") == DOOMED for a in crm.crm.activities)
    # The group releases the key and flows: a later chat reaches the CRM too.
    await parley.post(natterly_body("ChatInitiated", "dl-chat-next", T0, visitor="dl-vis2"))
    await parley.post(natterly_body("ChatClosed", "dl-chat-next", T0 + timedelta(minutes=3),
                                        visitor="dl-vis2", status="Closed"))

    async def caught_up() -> bool:
        return any(a.get("external_id") == "dl-chat-next" for a in crm.crm.activities)

    await eventually(caught_up, "the next chat's activity", timeout_s=40)
    await page.goto(f"{parley.url}/console/deadletters/crm")
    await expect(page.locator('[data-state="empty"]')).to_be_visible()
    assert errors == []
