"""The overview's Kafka side on a real broker: a group with no member shows as down, lag and
topics come from Kafka, and records appended are counted by offsets for times."""

from __future__ import annotations

import time

import pytest

from contracts.topics import Topics
from parley.console.app import Console
from parley.console.groups import GroupInfo
from parley.console.kafka_view import KafkaView
from parley.console.overview import PANELS, render_panel
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings
from projector.memory_store import MemoryStore
from tests.kit.live_projector import conversation, eventually, produce

pytestmark = pytest.mark.kafka


async def test_a_group_without_members_is_down_and_lag_is_counted(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    await produce(kafka_settings, topics, conversation("kv-1", n_messages=1))  # 3 records
    rt = Runtime.from_settings(Settings(kafka=kafka_settings))
    ghost = GroupInfo("ghost", topics.group_id("ghost"), topics.event_topics, topics.dlq("ghost"))
    console = Console(rt=rt, store=MemoryStore(), nav=(), groups=(ghost,))
    try:
        got = []

        async def measured() -> bool:  # a new broker elects its group coordinator first
            try:
                got[:] = await console.kafka.groups()
            except Exception:  # noqa: BLE001 - not yet: the view reconnects next time
                return False
            return True

        await eventually(measured, "the group's lag", timeout_s=60, every_s=0.5)
        [status] = got
        assert (status.members, status.lag.lag_records) == (0, 3)
        html = await render_panel(console, next(p for p in PANELS if p.name == "groups"))
        assert "down (no members)" in html and 'data-lag>3<' in html
        appended = await console.kafka.appended_since(topics.event_topics, time.time() - 3600)
        assert appended[topics.chat] == 3
        assert await console.kafka.appended_since([topics.chat], time.time() + 60) == {
            topics.chat: 0}
        ends = {t.topic: t.total for t in await console.kafka.topics()}
        assert ends[topics.chat] == 3
    finally:
        await console.kafka.close()


async def test_each_group_is_flagged_stuck_after_its_own_window(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    """A group's ``stuck_after_s`` decides its stuck flag on the overview: a group configured
    with 0 s is stuck on the second look at its unmoved lag, one with the default is not."""
    await produce(kafka_settings, topics, conversation("kv-2", n_messages=1))
    rt = Runtime.from_settings(Settings(kafka=kafka_settings))
    eager = GroupInfo("eager", topics.group_id("eager"), topics.event_topics,
                      topics.dlq("eager"), stuck_after_s=0.0)
    patient = GroupInfo("patient", topics.group_id("patient"), topics.event_topics,
                        topics.dlq("patient"))
    console = Console(rt=rt, store=MemoryStore(), nav=(), groups=(eager, patient))
    try:
        seen: dict[str, bool] = {}

        async def looked_twice() -> bool:
            try:
                for status in await console.kafka.groups():
                    seen[status.info.name] = status.lag.stuck
            except Exception:  # noqa: BLE001 - not yet: the view reconnects next time
                return False
            return seen.get("eager", False)

        await eventually(looked_twice, "the eager group flagged stuck", timeout_s=60,
                         every_s=0.5)
        assert seen["patient"] is False
    finally:
        await console.kafka.close()


async def test_its_readers_share_one_client_until_it_is_old_or_failed(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    """The rejections, dead letters and topics are read with the view's one reader (not a
    client per request), replaced after ``max_age_s``."""
    view = KafkaView(kafka_settings, topics.prefix, [], max_age_s=3600.0)
    try:
        report = await view.rejections(topics, per_source=1, window_s=3600.0, timeout_s=5.0)
        assert not report.exists
        reader = view._reader
        assert reader is not None
        assert topics.chat in await view.topic_names()
        assert await view.dead_letters(topics.dlq("nobody")) == []
        assert view._reader is reader
        view.max_age_s = 0.0
        await view.topic_names()
        assert view._reader is not None and view._reader is not reader
    finally:
        await view.close()
