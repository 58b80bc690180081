"""``rebuild analytics`` beside the real projector on the real broker: a definition changes
(the projector and the rebuild both run the new code), webhooks keep arriving and being
folded while the rebuild walks, and afterwards the live copy's roll-ups and chat views equal
those of a full rebuild of the whole log from scratch."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest

from contracts.position import Position
from contracts.state import ChatMetrics
from contracts.topics import Topics
from parley.privacy.config import build_key_ring
from parley.settings import KafkaSettings, Settings
from projector import analytics, rollups, views
from projector.analytics_rebuild import rebuild_analytics
from projector.rebuild import rebuild
from projector.store import Store
from projector.stores import open_store
from tests.kit.live_projector import (
    T0,
    applied,
    conversation,
    envelope,
    eventually,
    natterly_user_status,
    produce,
    running_projector,
)
from tests.kit.receiver_app import privacy_for_test
from tests.kit.rollup_contract import EVERYTHING

pytestmark = pytest.mark.kafka

DIMS = ("all", "agent", "department", "site", "source", "hour", rollups.TIMELINE)


async def tallies(store: Store, projection: str) -> dict[rollups.Key, bytes]:
    return {(g, dim, v, p): t for dim in DIMS
            for g, p, v, t in await store.report_tallies(projection, dim, EVERYTHING)}


async def chat_views(store: Store, projection: str) -> dict[str, bytes]:
    views_, cursor = await store.list_chats(projection, limit=200)  # every type
    assert cursor is None
    return {msgspec.json.decode(v, type=dict[str, Any])["id"]: v for v in views_}


def chats(first: int, last: int) -> list[Any]:
    out = []
    for n in range(first, last):
        agent = "ag-1" if n % 2 else "ag-2"
        out += conversation(f"chat-{n}", n_messages=2 + n % 4, agent=agent,
                            start=T0 + timedelta(minutes=7 * n), close=n % 5 != 0)
    return out


def longer(real: Any) -> Any:
    def metrics(s: Any, closed_at: Any) -> ChatMetrics:
        m = real(s, closed_at)
        return msgspec.structs.replace(m, handle_s=None if m.handle_s is None else m.handle_s + 2)
    return metrics


@pytest.mark.slow
async def test_beside_the_live_projector_it_ends_as_a_full_rebuild(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    statuses = [envelope("natterly", "acme", natterly_user_status(agent, status, T0 + timedelta(minutes=m)))
                for agent, status, m in (("ag-1", "online", 0), ("ag-2", "online", 3),
                                         ("ag-1", "offline", 200), ("ag-2", "invisible", 90))]
    positions: list[Position] = await produce(kafka_settings, topics, [*statuses, *chats(0, 20)])
    with mock.patch.object(views, "chat_metrics", longer(analytics.chat_metrics)):
        async with running_projector(kafka_settings, topics, url, group_id=f"{unique}-p") as p:
            await eventually(lambda: applied(p.store, positions), "the first chats folded")
            command = open_store(url)
            await command.open()
            # Between the walk's steps, each folded before the next step: the chats left
            # open closed (chat-0 is walked first), new chats, and an agent's status change.
            closes = [e for n in range(0, 20, 5) for e in
                      conversation(f"chat-{n}", n_messages=2 + n % 4,
                                   agent="ag-1" if n % 2 else "ag-2",
                                   start=T0 + timedelta(minutes=7 * n))[-1:]]
            more = [*closes, *chats(20, 40), envelope("natterly", "acme", natterly_user_status(
                "ag-2", "online", T0 + timedelta(minutes=400)))]

            async def webhooks(done: int) -> None:
                if done > 2 and more:  # the agents and a first step of chats walked
                    batch, more[:] = more[:6], more[6:]
                    positions.extend(sent := await produce(kafka_settings, topics, batch))
                    await eventually(lambda: applied(p.store, sent), "a batch folded")

            try:
                report = await rebuild_analytics(command, chunk=4, out=io.StringIO(),
                                                 after_step=webhooks)
            finally:
                await command.close()
            positions.extend(await produce(kafka_settings, topics, more))
            assert report.walked >= 20
            await eventually(lambda: applied(p.store, positions), "every webhook folded")
            live = await p.store.live_projection()
            assert live is not None
            got, got_views = await tallies(p.store, live), await chat_views(p.store, live)
        clean = open_store("memory://")
        await clean.open()
        ring = build_key_ring(Settings(kafka=kafka_settings, privacy=privacy_for_test(kafka_settings)))
        try:
            full = await rebuild(clean, kafka_settings, topics, out=io.StringIO(), ring=ring)
            assert {k[1] for k in got} == set(DIMS)  # every dimension, the agents' days too
            assert got == await tallies(clean, full.name)
            assert got_views == await chat_views(clean, full.name)
        finally:
            await ring.close()
            await clean.close()
    handled = [m for m in msgspec.json.decode(b"[" + b",".join(got_views.values()) + b"]",
                                              type=list[dict[str, Any]]) if m["metrics"]["handle_s"]]
    assert len(got_views) == 40 and len(handled) == 36  # chat-20, -25, -30, -35 left open
