"""The query API, served by the real projector role (real broker, real SQLite store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.position import Position
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.launcher import free_ports
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, StoreSettings
from projector.role import ProjectorRole, ProjectorRoleOptions
from tests.kit.live_projector import (
    T0,
    TOKEN,
    applied,
    envelope,
    eventually,
    natterly_body,
    produce,
)
from tests.kit.projector_api import get_json

pytestmark = pytest.mark.kafka


async def test_get_chat_visitor_and_404s(api: tuple[TestClient[Any, Any], ProjectorRole],
                                         seeded: list[Position]) -> None:
    client, _ = api
    chat = await get_json(client, "/api/chats/chat-4")
    assert (chat["id"], chat["status"], chat["message_count"]) == ("chat-4", "active", 6)
    assert chat["agent"] == {"id": "ag-2", "name": "Agent ag-2"}
    assert chat["visitor"]["id"] == "vis-chat-4"
    visitor = await get_json(client, "/api/visitors/vis-chat-4")
    assert visitor["chats"] == ["chat-4"]
    for path in ("/api/chats/nope", "/api/visitors/nope", "/api/chats/nope/messages"):
        body = await get_json(client, path, 404)
        assert body["error"] == "not_found" and "nope" in body["detail"]


async def test_a_visitor_identified_mid_chat_is_one_visitor(
        api: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    """Known first by a session only (``session:s-9``), then by uuid beside that session:
    the uuid visitor shows the session's pages and chat; the session says whom it became."""
    client, role = api
    at = int(T0.timestamp())
    registration = {"event": "SessionRegistration", "timestamp": at, "auth_token": TOKEN,
                    "payload": {"session": {"uuid": "s-9", "page_url": "https://shop.example/",
                                            "page_title": "Home"}}}
    chat = {"uuid": "chat-s9", "status": "Initiated", "closed_at": 0, "session_id": "s-9"}
    started = {"event": "ChatInitiated", "timestamp": at + 5, "auth_token": TOKEN,
               "payload": {"chat": chat}}
    accepted = {"event": "ChatAccepted", "timestamp": at + 9, "auth_token": TOKEN,
                "payload": {"chat": {**chat, "status": "Accepted",
                                     "visitor": {"uuid": "v-9", "name": "Ann"}}}}
    positions = await produce(kafka_settings, topics, [
        envelope("natterly", "acme", orjson.dumps(body))
        for body in (registration, started, accepted)])
    await eventually(lambda: applied(role.store, positions), "identification applied")
    assert (await get_json(client, "/api/chats/chat-s9"))["visitor"]["id"] == "v-9"
    visitor = await get_json(client, "/api/visitors/v-9")
    assert (visitor["chats"], visitor["sessions"]) == (["chat-s9"], ["session:s-9"])
    assert [p["url"] for p in visitor["pages"]] == ["https://shop.example/"]
    session = await get_json(client, "/api/visitors/session:s-9")
    assert session["identified_as"] == "v-9"


async def test_an_author_named_by_id_only_is_named_by_the_chat(
        api: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    """A ChatShipper message names its author by user id; a later conversation update lists
    that user populated: the messages API and the agent list both give the name."""
    client, role = api
    message = {"id": "m-id-only", "conversation": "conv-names", "type": "chat", "role": "agent",
               "user": "u-named", "text": "Hello", "createdAt": "2026-03-01T09:01:00Z"}
    update = {"id": "w-names-2", "event": "conversation.update", "timestamp": "2026-03-01T09:02:00Z",
              "data": {"conversation": {
                  "id": "conv-names", "type": "contact", "status": "active",
                  "updatedAt": "2026-03-01T09:02:00Z",
                  "participants": [{"user": {"id": "u-named", "name": "Ann Agent"},
                                    "role": "agent", "accepted": True, "active": True}]}}}
    created = {"id": "w-names-1", "event": "message.create.agent.chat",
               "timestamp": "2026-03-01T09:01:00Z",
               "data": {"conversation": {"id": "conv-names"}, "message": message}}
    positions = await produce(kafka_settings, topics, [
        envelope("chatshipper", "shop", orjson.dumps(body)) for body in (created, update)])
    await eventually(lambda: applied(role.store, positions), "names applied")
    [item] = (await get_json(client, "/api/chats/conv-names/messages"))["items"]
    assert item["author"] == {"role": "agent", "name": "Ann Agent", "id": "u-named"}
    agents = {a["id"]: a for a in (await get_json(client, "/api/agents"))["items"]}
    assert agents["u-named"]["name"] == "Ann Agent"


async def test_list_chats_filters(api: tuple[TestClient[Any, Any], ProjectorRole],
                                  seeded: list[Position]) -> None:
    client, _ = api
    everything = await get_json(client, "/api/chats?limit=200")
    ids = [c["id"] for c in everything["items"]]
    assert sorted(ids) == ["chat-0", "chat-1", "chat-2", "chat-3", "chat-4", "conv-a", "conv-b"]
    assert everything["next_cursor"] is None
    closed = await get_json(client, "/api/chats?status=closed")
    assert sorted(c["id"] for c in closed["items"]) == ["chat-0", "chat-1", "chat-2"]
    shop = await get_json(client, "/api/chats?source=shop")
    assert sorted(c["id"] for c in shop["items"]) == ["conv-a", "conv-b"]
    ag1 = await get_json(client, "/api/chats?agent=ag-1")
    assert sorted(c["id"] for c in ag1["items"]) == ["chat-1", "chat-3"]
    both = await get_json(client, "/api/chats?agent=ag-2&status=active")
    assert [c["id"] for c in both["items"]] == ["chat-4"]
    assert (await get_json(client, "/api/chats?source=nowhere"))["items"] == []
    # Bot conversations are not customers' chats: listed only when asked for.
    bots = await get_json(client, "/api/chats?type=bot")
    assert [(c["id"], c["type"]) for c in bots["items"]] == [("conv-bot", "bot")]
    every = await get_json(client, "/api/chats?type=all&limit=200")
    assert sorted(c["id"] for c in every["items"]) == sorted([*ids, "conv-bot"])
    assert [c["id"] for c in (await get_json(client, "/api/chats?type=contact&limit=200"))["items"]] == ids


@pytest.mark.parametrize(("query", "allowed"), [
    ("type=bogus", "type must be one of agent, all, bot, contact, system"),
    ("type=Bot", "type must be one of agent, all, bot, contact, system"),
    ("status=open", "status must be one of active, closed, idle, waiting"),
])
async def test_an_unknown_filter_value_is_a_400_listing_the_allowed_ones(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        query: str, allowed: str) -> None:
    # It was a 200 with an empty list: a typo looked like "no such chats".
    body = await get_json(api[0], f"/api/chats?{query}", 400)
    assert body == {"error": "bad_request", "detail": allowed}


@pytest.mark.parametrize("query", ["status=open", "limit=0", "limit=abc", "limit=100000",
                                   "cursor=garbage", "min_position=nonsense",
                                   "min_position=other.topic:0:1"])
async def test_bad_parameters_are_400(api: tuple[TestClient[Any, Any], ProjectorRole],
                                      query: str) -> None:
    body = await get_json(api[0], f"/api/chats?{query}", 400)
    assert body["error"] == "bad_request" and body["detail"]


async def test_pagination_is_stable_across_pages(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    full = [c["id"] for c in (await get_json(client, "/api/chats?limit=200"))["items"]]
    pages: list[list[str]] = []
    cursor = None
    while True:
        q = "/api/chats?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(client, q)
        pages.append([c["id"] for c in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if len(pages) == 1:
            # A chat already listed gets new activity between pages: no duplicate, no skip.
            listed = pages[0][0]
            body = natterly_body("ChatAccepted", listed, T0 + timedelta(hours=5), agent="ag-1")
            pos = await produce(kafka_settings, topics, [envelope("natterly", "acme", body)])
            await eventually(lambda pos=pos: applied(role.store, pos), "update applied")  # type: ignore[misc]
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [i for p in pages for i in p]
    assert flat == full  # the moved chat was listed once, at its old place; nothing skipped
    # Newest activity first: the updated chat now leads a fresh listing.
    fresh = (await get_json(client, "/api/chats?limit=1"))["items"]
    assert fresh[0]["id"] == pages[0][0]


async def test_messages_in_order_with_pagination(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position]) -> None:
    client, _ = api
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = "/api/chats/chat-4/messages?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(client, q)
        got += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [m["id"] for m in got] == [f"chat-4-m{i}" for i in range(6)]
    assert [m["text"] for m in got][:2] == ["message 0", "message 1"]
    assert all(m["chat_id"] == "chat-4" for m in got)
    shipper = await get_json(client, "/api/chats/conv-b/messages")
    assert [m["text"] for m in shipper["items"]] == [f"text {i}" for i in range(4)]
    body = await get_json(client, "/api/chats/chat-4/messages?limit=0", 400)
    assert body["error"] == "bad_request"


async def test_agents(api: tuple[TestClient[Any, Any], ProjectorRole],
                      seeded: list[Position]) -> None:
    agents = (await get_json(api[0], "/api/agents"))["items"]
    assert [(a["id"], a["status"]) for a in agents] == [("ag-1", "online"), ("ag-2", "offline")]
    for agent in agents:  # served with the agent: docs/analytics.md
        metrics = agent["metrics"]
        assert (metrics["version"], metrics["last_status"]) == (3, agent["status"])
        assert metrics["status_changes"] >= 1 and metrics["measured_to"] is not None
        one = await get_json(api[0], f"/api/agents/{agent['id']}")
        # GET /api/agents/{id}: the same agent, the same measures, but for the open spell
        # of an online agent, counted up to each request (docs/analytics.md): later, longer.
        steady = ("online_s", "time")
        assert ({**one, "metrics": {k: v for k, v in one["metrics"].items() if k not in steady}}
                == {**agent, "metrics": {k: v for k, v in metrics.items() if k not in steady}})
        assert one["metrics"]["online_s"] >= metrics["online_s"]
        if agent["status"] == "online":  # online since March 2026: months of it
            assert one["metrics"]["online_s"] > 86_400
        assert set(one["metrics"]["time"]) >= {"online_s", "occupancy", "concurrency_max"}
    missing = await api[0].get("/api/agents/nobody")
    assert missing.status == 404


async def test_reports(api: tuple[TestClient[Any, Any], ProjectorRole],
                       seeded: list[Position]) -> None:
    """The seeded Natterly chats all say they were initiated at T0 (2026-03-01 09:00) and
    chat-i is accepted at T0 + i min + 5 s: waits 5, 65, 125, 185 and 245 s; ag-1 holds
    chat-1 and chat-3 (65, 185), ag-2 chat-0, chat-2 and chat-4 (5, 125, 245). chat-i
    closes 10 s per message (2 + i) after its start, for i < 3: handled 15, 25 and 35 s."""
    client, _ = api
    body = await get_json(client, "/api/reports/chats?from=2026-03-01&to=2026-03-31&group_by=agent")
    groups = {g["key"]: g for g in body["groups"]}
    assert (groups["ag-1"]["chats"], groups["ag-2"]["chats"]) == (2, 3)
    wait1, wait2 = groups["ag-1"]["measures"]["wait_s"], groups["ag-2"]["measures"]["wait_s"]
    assert (wait1["count"], wait1["mean"], wait2["mean"]) == (2, 125.0, 125.0)
    tolerance = body["relative_error"]
    # Nearest rank: the median of two is the first (65), of three the second (125).
    for got, exact in ((wait1["median"], 65), (wait1["p90"], 185), (wait2["median"], 125),
                       (wait2["p90"], 245)):
        assert abs(got - exact) <= exact * tolerance, (got, exact)
    assert groups["ag-2"]["measures"]["handle_s"]["mean"] == 25.0  # (15 + 35) / 2
    by_day = await get_json(client, "/api/reports/chats?from=2026-02-28&to=2026-03-02&group_by=day")
    assert [(g["key"], g["chats"]) for g in by_day["groups"]] == [("2026-03-01", 7)]
    live = await get_json(client, "/api/reports/live")
    assert {a["id"]: a["active_chats"] for a in live["agents"]} == {"ag-1": 1, "ag-2": 1}
    agents = (await get_json(client, "/api/agents"))["items"]
    assert [a["metrics"]["chats_handled"] for a in agents] == [2, 3]
    report = await get_json(client, "/api/reports/agents?from=2026-03-01&to=2026-03-01")
    assert [(a["id"], a["chats"], a["metrics"]["chats_handled"]) for a in report["items"]] == [
        ("ag-1", 2, 2), ("ag-2", 3, 3)]
    assert report["items"][0]["measures"]["wait_s"]["mean"] == 125.0


@pytest.mark.parametrize(("query", "names"), [
    ("/api/reports/chats?from=2026-03-02&to=2026-03-01", "from (2026-03-02) is after to"),
    ("/api/reports/chats?group_by=week", "group_by must be one of"),
    ("/api/reports/chats?from=2026-02-30", "from is not a calendar date"),
    ("/api/reports/agents?to=yesterday", "to must be a date as YYYY-MM-DD"),
    ("/api/reports/chats?from=2000-01-01&to=2026-01-01", "more than 3660 days"),
])
async def test_a_bad_report_query_is_a_400_naming_the_parameter(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        query: str, names: str) -> None:
    body = await get_json(api[0], query, 400)
    assert body["error"] == "bad_request" and names in body["detail"], body


async def test_reads_keep_working_while_kafka_is_unreachable(tmp_path: Path, unique: str) -> None:
    [dead_port] = free_ports(1)  # nothing listens there
    settings = Settings(kafka=KafkaSettings(bootstrap=f"127.0.0.1:{dead_port}", topic_prefix=unique,
                                            request_timeout_ms=1000),
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"))
    rt = Runtime.from_settings(settings)
    role = ProjectorRole(rt, ProjectorRoleOptions(restart_backoff_s=0.2, stop_timeout_s=10))
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(rt, [role])))
    await client.start_server()
    try:
        assert (await get_json(client, "/api/chats"))["items"] == []
        await get_json(client, "/api/chats/anything", 404)

        async def says_why() -> bool:
            resp = await client.get("/readyz")
            body = await resp.json()
            return resp.status == 503 and "failed" in body["problems"].get("projector", "")

        await eventually(says_why, "/readyz to report the projector's Kafka failure")
    finally:
        await client.close()
