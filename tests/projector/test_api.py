"""The query API, served by the real projector role (real broker, real SQLite store)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.envelope import encode_envelope
from contracts.position import Position
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_producer
from parley.kafka.launcher import free_ports
from parley.kafka.topics import apply_topics
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, StoreSettings
from projector.api import ApiOptions
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from projector.sqlite_store import SqliteStore
from tests.kit.live_projector import (
    T0,
    TOKEN,
    applied,
    conversation,
    delete_dlq,
    envelope,
    eventually,
    natterly_body,
    natterly_user_status,
    produce,
    shipper_conversation,
)

pytestmark = pytest.mark.kafka

MAX_WAITERS = 4  # http.max_position_waiters of the API under test
READERS, READ_QUEUE = 2, 2  # the store's ?readers= and ?read_queue=


@pytest.fixture
async def api(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path,
              unique: str) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    settings = Settings(kafka=kafka_settings,
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"
                                                f"?readers={READERS}&read_queue={READ_QUEUE}"),
                        http=HttpSettings(max_position_waiters=MAX_WAITERS))
    rt = Runtime.from_settings(settings)
    role = ProjectorRole(rt, ProjectorRoleOptions(
        runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100),
        api=ApiOptions(min_position_timeout_s=3.0, recheck_s=0.2)))
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(rt, [role])))
    await client.start_server()
    try:
        yield client, role
    finally:
        await client.close()
        await delete_dlq(kafka_settings, topics)


@pytest.fixture
async def seeded(kafka_settings: KafkaSettings, topics: Topics,
                 api: tuple[TestClient[Any, Any], ProjectorRole]) -> list[Position]:
    """Seven customer chats (five Natterly, two ChatShipper), a ChatShipper bot conversation
    and two agents, all applied."""
    envs = []
    for i in range(5):
        envs += conversation(f"chat-{i}", n_messages=2 + i, agent="ag-1" if i % 2 else "ag-2",
                             start=T0 + timedelta(minutes=i), close=i < 3)
    envs += shipper_conversation("conv-a", n_messages=1, start=T0 + timedelta(minutes=10))
    envs += shipper_conversation("conv-b", n_messages=4, start=T0 + timedelta(minutes=11))
    envs += shipper_conversation("conv-bot", n_messages=1, start=T0 + timedelta(minutes=12),
                                 conversation_type="bot")
    envs += [envelope("natterly", "acme", natterly_user_status("ag-1", "Online", T0)),
             envelope("natterly", "acme", natterly_user_status("ag-2", "Offline", T0))]
    positions = await produce(kafka_settings, topics, envs)
    store = api[1].store
    await eventually(lambda: applied(store, positions), "seed applied")
    return positions


async def _json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, (path, resp.status, body)
    assert resp.content_type == "application/json"
    return body


async def test_get_chat_visitor_and_404s(api: tuple[TestClient[Any, Any], ProjectorRole],
                                         seeded: list[Position]) -> None:
    client, _ = api
    chat = await _json(client, "/api/chats/chat-4")
    assert (chat["id"], chat["status"], chat["message_count"]) == ("chat-4", "active", 6)
    assert chat["agent"] == {"id": "ag-2", "name": "Agent ag-2"}
    assert chat["visitor"]["id"] == "vis-chat-4"
    visitor = await _json(client, "/api/visitors/vis-chat-4")
    assert visitor["chats"] == ["chat-4"]
    for path in ("/api/chats/nope", "/api/visitors/nope", "/api/chats/nope/messages"):
        body = await _json(client, path, 404)
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
    assert (await _json(client, "/api/chats/chat-s9"))["visitor"]["id"] == "v-9"
    visitor = await _json(client, "/api/visitors/v-9")
    assert (visitor["chats"], visitor["sessions"]) == (["chat-s9"], ["session:s-9"])
    assert [p["url"] for p in visitor["pages"]] == ["https://shop.example/"]
    session = await _json(client, "/api/visitors/session:s-9")
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
    [item] = (await _json(client, "/api/chats/conv-names/messages"))["items"]
    assert item["author"] == {"role": "agent", "name": "Ann Agent", "id": "u-named"}
    agents = {a["id"]: a for a in (await _json(client, "/api/agents"))["items"]}
    assert agents["u-named"]["name"] == "Ann Agent"


async def test_list_chats_filters(api: tuple[TestClient[Any, Any], ProjectorRole],
                                  seeded: list[Position]) -> None:
    client, _ = api
    everything = await _json(client, "/api/chats?limit=200")
    ids = [c["id"] for c in everything["items"]]
    assert sorted(ids) == ["chat-0", "chat-1", "chat-2", "chat-3", "chat-4", "conv-a", "conv-b"]
    assert everything["next_cursor"] is None
    closed = await _json(client, "/api/chats?status=closed")
    assert sorted(c["id"] for c in closed["items"]) == ["chat-0", "chat-1", "chat-2"]
    shop = await _json(client, "/api/chats?source=shop")
    assert sorted(c["id"] for c in shop["items"]) == ["conv-a", "conv-b"]
    ag1 = await _json(client, "/api/chats?agent=ag-1")
    assert sorted(c["id"] for c in ag1["items"]) == ["chat-1", "chat-3"]
    both = await _json(client, "/api/chats?agent=ag-2&status=active")
    assert [c["id"] for c in both["items"]] == ["chat-4"]
    assert (await _json(client, "/api/chats?source=nowhere"))["items"] == []
    # Bot conversations are not customers' chats: listed only when asked for.
    bots = await _json(client, "/api/chats?type=bot")
    assert [(c["id"], c["type"]) for c in bots["items"]] == [("conv-bot", "bot")]
    every = await _json(client, "/api/chats?type=all&limit=200")
    assert sorted(c["id"] for c in every["items"]) == sorted([*ids, "conv-bot"])
    assert [c["id"] for c in (await _json(client, "/api/chats?type=contact&limit=200"))["items"]] == ids


@pytest.mark.parametrize(("query", "allowed"), [
    ("type=bogus", "type must be one of agent, all, bot, contact, system"),
    ("type=Bot", "type must be one of agent, all, bot, contact, system"),
    ("status=open", "status must be one of active, closed, idle, waiting"),
])
async def test_an_unknown_filter_value_is_a_400_listing_the_allowed_ones(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        query: str, allowed: str) -> None:
    # It was a 200 with an empty list: a typo looked like "no such chats".
    body = await _json(api[0], f"/api/chats?{query}", 400)
    assert body == {"error": "bad_request", "detail": allowed}


@pytest.mark.parametrize("query", ["status=open", "limit=0", "limit=abc", "limit=100000",
                                   "cursor=garbage", "min_position=nonsense",
                                   "min_position=other.topic:0:1"])
async def test_bad_parameters_are_400(api: tuple[TestClient[Any, Any], ProjectorRole],
                                      query: str) -> None:
    body = await _json(api[0], f"/api/chats?{query}", 400)
    assert body["error"] == "bad_request" and body["detail"]


async def test_pagination_is_stable_across_pages(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    full = [c["id"] for c in (await _json(client, "/api/chats?limit=200"))["items"]]
    pages: list[list[str]] = []
    cursor = None
    while True:
        q = "/api/chats?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await _json(client, q)
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
    fresh = (await _json(client, "/api/chats?limit=1"))["items"]
    assert fresh[0]["id"] == pages[0][0]


async def test_messages_in_order_with_pagination(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position]) -> None:
    client, _ = api
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = "/api/chats/chat-4/messages?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = await _json(client, q)
        got += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [m["id"] for m in got] == [f"chat-4-m{i}" for i in range(6)]
    assert [m["text"] for m in got][:2] == ["message 0", "message 1"]
    assert all(m["chat_id"] == "chat-4" for m in got)
    shipper = await _json(client, "/api/chats/conv-b/messages")
    assert [m["text"] for m in shipper["items"]] == [f"text {i}" for i in range(4)]
    body = await _json(client, "/api/chats/chat-4/messages?limit=0", 400)
    assert body["error"] == "bad_request"


async def test_agents(api: tuple[TestClient[Any, Any], ProjectorRole],
                      seeded: list[Position]) -> None:
    agents = (await _json(api[0], "/api/agents"))["items"]
    assert [(a["id"], a["status"]) for a in agents] == [("ag-1", "online"), ("ag-2", "offline")]
    for agent in agents:  # served with the agent: docs/analytics.md
        metrics = agent["metrics"]
        assert (metrics["version"], metrics["last_status"]) == (3, agent["status"])
        assert metrics["status_changes"] >= 1 and metrics["measured_to"] is not None
        one = await _json(api[0], f"/api/agents/{agent['id']}")
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
    body = await _json(client, "/api/reports/chats?from=2026-03-01&to=2026-03-31&group_by=agent")
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
    by_day = await _json(client, "/api/reports/chats?from=2026-02-28&to=2026-03-02&group_by=day")
    assert [(g["key"], g["chats"]) for g in by_day["groups"]] == [("2026-03-01", 7)]
    live = await _json(client, "/api/reports/live")
    assert {a["id"]: a["active_chats"] for a in live["agents"]} == {"ag-1": 1, "ag-2": 1}
    agents = (await _json(client, "/api/agents"))["items"]
    assert [a["metrics"]["chats_handled"] for a in agents] == [2, 3]
    report = await _json(client, "/api/reports/agents?from=2026-03-01&to=2026-03-01")
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
    body = await _json(api[0], query, 400)
    assert body["error"] == "bad_request" and names in body["detail"], body


async def test_min_position_waits_until_applied(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    body = natterly_body("ChatAccepted", "chat-new", T0 + timedelta(hours=1), agent="ag-1",
                         subject="Waited for")
    env = envelope("natterly", "acme", body)
    # The record's position before it exists: the next offset of its partition, once a
    # warm-up record with the same key is applied (no one else writes to this partition).
    [warm] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-new", T0, agent="ag-1"))])
    await eventually(lambda: applied(role.store, [warm]), "warm-up record applied")
    upcoming = Position(warm.topic, warm.partition, warm.offset + 1)
    request = asyncio.create_task(client.get(f"/api/chats/chat-new?min_position={upcoming}"))

    async def waiting() -> bool:
        if request.done():
            resp = request.result()
            raise AssertionError(f"answered before the record existed: {resp.status}")
        [metric] = role.metrics.waiting.collect()
        return bool(metric.samples[0].value == 1)

    await eventually(waiting, "the request to wait for its position")
    assert (await _json(client, "/api/chats/chat-new"))["subject"] == "Help"  # not there yet
    [pos] = await produce(kafka_settings, topics, [env])
    assert pos == upcoming
    resp = await asyncio.wait_for(request, 10)
    chat = await resp.json()
    assert resp.status == 200
    assert chat["subject"] == "Waited for"  # the waited-for event is in


async def test_min_position_waiters_are_bounded_and_woken_by_the_commit(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    [warm] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-cap", T0, agent="ag-1"))])
    await eventually(lambda: applied(role.store, [warm]), "warm-up record applied")
    upcoming = Position(warm.topic, warm.partition, warm.offset + 1)
    store_reads = 0
    real_offsets = role.store.offsets

    async def counted(projection: str) -> dict[tuple[str, int], int]:
        nonlocal store_reads
        store_reads += 1
        return await real_offsets(projection)

    role.store.offsets = counted  # type: ignore[method-assign]
    path = f"/api/chats/chat-cap?min_position={upcoming}"
    waiting = [asyncio.create_task(client.get(path)) for _ in range(MAX_WAITERS)]

    async def all_waiting() -> bool:
        [metric] = role.metrics.waiting.collect()
        return bool(metric.samples[0].value == MAX_WAITERS)

    await eventually(all_waiting, "every request to wait for its position")
    # One more is refused at once, without waiting.
    refused = await _json(client, path, 503)
    assert refused["error"] == "overloaded"
    resp = await client.get(path)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    # The window in which a per-waiter poll (every recheck_s=0.2 s) would read the store
    # MAX_WAITERS times over; the waits themselves are woken by the runner's commit.
    await asyncio.sleep(1.0)
    [pos] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-cap", T0 + timedelta(hours=1), agent="ag-1", subject="Landed"))])
    assert pos == upcoming
    for resp in await asyncio.wait_for(asyncio.gather(*waiting), 10):
        assert resp.status == 200 and (await resp.json())["subject"] == "Landed"
    assert store_reads == 0  # the runner owns the partition: no store polling at all
    # The slots are free again.
    assert (await _json(client, path))["subject"] == "Landed"


async def test_a_flood_of_slow_reads_is_refused_503_while_commits_go_on(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    store = role.store
    assert isinstance(store, SqliteStore)
    # Slow reads holding every API reader inside SQLite's thread (as a costly query would).
    arrived, release = threading.Barrier(READERS + 1), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        arrived.wait(timeout=10)
        release.wait(timeout=10)

    slow_reads = [asyncio.create_task(store._api().run(slow)) for _ in range(READERS)]
    try:
        await asyncio.to_thread(arrived.wait, 10)
        queued = [asyncio.create_task(client.get("/api/chats/chat-1")) for _ in range(READ_QUEUE)]

        async def queue_full() -> bool:
            return store._api().queue.waiting == READ_QUEUE

        await eventually(queue_full, "the requests to wait for a reader")
        resp = await client.get("/api/chats/chat-1")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"] == "overloaded"
        # The projector's commits (and its own reads) go on meanwhile.
        [pos] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
            "ChatAccepted", "chat-1", T0 + timedelta(hours=1), agent="ag-1", subject="Landed"))])
        await eventually(lambda: applied(store, [pos]), "the commit during the flood")
        assert not any(task.done() for task in queued)
    finally:
        release.set()
    for resp in await asyncio.wait_for(asyncio.gather(*queued), 10):
        assert resp.status == 200 and (await resp.json())["subject"] == "Landed"
    await asyncio.wait_for(asyncio.gather(*slow_reads), 10)


async def test_min_position_times_out_with_504(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        topics: Topics) -> None:
    client, _ = api
    far = Position(topics.chat, 0, 10**9)
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = await _json(client, f"/api/chats/chat-1?min_position={far}", 504)
    assert body["error"] == "timeout" and str(far) in body["detail"]
    assert 2.9 <= loop.time() - started < 10  # bounded by min_position_timeout_s=3.0
    # An applied position answers at once.
    done = seeded[-1]
    assert (await _json(client, f"/api/agents?min_position={done}"))["items"]


async def test_min_position_on_a_partition_the_topic_lacks_is_a_400_at_once(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    # It waited the whole min_position_timeout_s, then answered 504 "retry later".
    client, _ = api
    n = kafka_settings.partitions
    loop = asyncio.get_running_loop()
    started = loop.time()
    nowhere = Position(topics.chat, n + 4, 0)
    body = await _json(client, f"/api/chats/chat-1?min_position={nowhere}", 400)
    assert body == {"error": "bad_request", "detail": (
        f"min_position: {topics.chat} has {n} partition(s), 0 to {n - 1}; "
        f"there is no partition {n + 4}")}
    assert loop.time() - started < 2.5  # min_position_timeout_s is 3.0


async def test_min_position_on_a_partition_just_added_is_waited_for(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    """The runner's consumer learned the partition count before the partition was added: the
    position is checked against fresh metadata, and the wait takes it once it is applied."""
    client, _ = api
    n = kafka_settings.partitions
    grown = msgspec.structs.replace(kafka_settings, partitions=n + 1)
    await apply_topics(grown, topics.specs(grown.partitions), allow_repartition=True)
    body = natterly_body("ChatAccepted", "chat-new-partition", T0, agent="ag-1", subject="New")
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topics.chat, value=encode_envelope(envelope("natterly", "acme", body)),
            key=b"chat-new-partition", partition=n)
    finally:
        await producer.stop()
    added = Position(meta.topic, meta.partition, meta.offset)
    resp = await client.get(f"/api/chats/chat-new-partition?min_position={added}")
    answer = await resp.json()
    assert resp.status == 200, answer  # was the rebalance slower than min_position_timeout_s?
    assert answer["subject"] == "New"


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
        assert (await _json(client, "/api/chats"))["items"] == []
        await _json(client, "/api/chats/anything", 404)

        async def says_why() -> bool:
            resp = await client.get("/readyz")
            body = await resp.json()
            return resp.status == 503 and "failed" in body["problems"].get("projector", "")

        await eventually(says_why, "/readyz to report the projector's Kafka failure")
    finally:
        await client.close()
