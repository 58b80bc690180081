"""A projector on the real broker, for the runner, API, rebuild, crash and DLQ tests.

Events are real envelopes: webhook bodies (synthetic, in each provider's documented shape, or
golden files) go through ``contracts.ingest.parse_webhook`` and are produced to the real broker
exactly as the receiver would.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from contracts.envelope import Envelope, encode_envelope
from contracts.ingest import parse_webhook
from contracts.position import Position
from contracts.topics import Topics
from parley.erasure_ledger import LedgerWriter
from parley.kafka.clients import make_admin, make_producer
from parley.privacy.config import build_key_ring
from parley.settings import KafkaSettings, Settings
from projector.dlq import KafkaDeadLetters
from projector.folder import Folder
from projector.metrics import ProjectorMetrics
from projector.rebuild import RebuildReport, rebuild
from projector.runner import ProjectorRunnerOptions, Runner, Watermarks
from projector.state_publisher import StatePublisher
from projector.store import Store
from projector.stores import open_store
from tests.kit.receiver_app import TEST_MASTER_KEY, privacy_for_test

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TOKEN = "natterly-test-token"


# ----------------------------------------------------------------------------- bodies
def natterly_body(event: str, chat: str, at: datetime, *, agent: str | None = None,
                  visitor: str | None = None, messages: Sequence[tuple[str, str, datetime]] = (),
                  status: str | None = None, subject: str = "Help") -> bytes:
    """A Natterly ``Chat…`` webhook in the documented shape (with an auth_token to strip)."""
    chat_doc: dict[str, Any] = {
        "uuid": chat, "status": status or event.removeprefix("Chat"), "subject": subject,
        "initiated_at": int(T0.timestamp()), "closed_at": 0, "country": "United Kingdom",
        "country_code": "GB", "city": None, "browser": "Firefox", "platform": "Linux",
        "department": {"uuid": "dep-1", "name": "Sales"},
        "site": {"uuid": "site-1", "name": "Shop", "color": "ff0000", "initials": "S"},
    }
    if agent is not None:
        chat_doc["user"] = {"uuid": agent, "name": f"Agent {agent}"}
    if visitor is not None:
        chat_doc["visitor"] = {"uuid": visitor, "name": f"Visitor {visitor}", "anonymous": False}
    msgs = [{"uuid": m_id, "chat": chat, "text": text, "event": False,
             "author": {"type": "Visitor", "name": "V"}, "posted_by_visitor": True,
             "created_at": int(m_at.timestamp()), "updated_at": int(m_at.timestamp())}
            for m_id, text, m_at in messages]
    return orjson.dumps({"event": event, "timestamp": int(at.timestamp()),
                         "payload": {"chat": chat_doc, "messages": msgs}, "auth_token": TOKEN})


def chatshipper_body(event_id: str, conversation: str, at: datetime, *, message: str | None = None,
                     text: str = "hello", org: str = "5c138790ec944f05ff5f6d77",
                     conversation_type: str = "contact") -> bytes:
    """A ChatShipper ``message.create.contact.chat`` (or ``conversation.create``) webhook."""
    iso = at.isoformat().replace("+00:00", "Z")
    conv = {"id": conversation, "organization": org, "type": conversation_type, "status": "open",
            "name": "Conversation", "createdAt": iso, "updatedAt": iso}
    if message is None:
        event, data = "conversation.create", {"conversation": conv}
        obj = f"https://api.web1on1.chat/v2/conversations/{conversation}"
    else:
        event = "message.create.contact.chat"
        data = {"conversation": conv,
                "message": {"id": message, "organization": org, "conversation": conversation,
                            "type": "chat", "role": "contact", "text": text,
                            "createdAt": iso, "updatedAt": iso}}
        obj = f"https://api.web1on1.chat/v2/messages/{message}"
    return orjson.dumps({
        "id": event_id, "event": event, "timestamp": iso, "organization": org,
        "activity": {"@context": "https://www.w3.org/ns/activitystreams", "type": "Create",
                     "actor": {"id": "https://api.web1on1.chat/v2/contacts/c1", "type": "Person"},
                     "object": {"id": obj, "type": "Object"}, "published": iso,
                     "summary": "created"},
        "data": data})


def natterly_user_status(agent: str, status: str, at: datetime) -> bytes:
    """A Natterly ``UserStatusChanged`` webhook (agent ``agent`` is now ``status``)."""
    return orjson.dumps({"event": "UserStatusChanged", "timestamp": int(at.timestamp()),
                         "payload": {"user": {"uuid": agent, "name": f"Agent {agent}"},
                                     "status": status},
                         "auth_token": TOKEN})


def envelope(provider: str, source: str, body: bytes, *, at: datetime | None = None) -> Envelope:
    return parse_webhook(provider, source, body, received_at=at or datetime.now(UTC))


def conversation(chat: str, *, n_messages: int = 3, agent: str = "ag-1",
                 visitor: str | None = None, start: datetime = T0, close: bool = True
                 ) -> list[Envelope]:
    """One Natterly chat's life: initiated (first message), accepted, more messages, closed."""
    visitor = visitor or f"vis-{chat}"
    msgs = [(f"{chat}-m{i}", f"message {i}", start + timedelta(seconds=10 * i))
            for i in range(n_messages)]
    bodies = [natterly_body("ChatInitiated", chat, start, visitor=visitor, messages=msgs[:1],
                            status="Initiated"),
              natterly_body("ChatAccepted", chat, start + timedelta(seconds=5), agent=agent,
                            visitor=visitor)]
    for i in range(1, n_messages):
        bodies.append(natterly_body("ChatAccepted", chat, msgs[i][2], agent=agent,
                                    visitor=visitor, messages=msgs[: i + 1]))
    if close:
        bodies.append(natterly_body("ChatClosed", chat, start + timedelta(seconds=10 * n_messages),
                                    agent=agent, visitor=visitor, messages=msgs))
    return [envelope("natterly", "acme", b) for b in bodies]


def shipper_conversation(conv: str, *, n_messages: int = 2, start: datetime = T0,
                         conversation_type: str = "contact") -> list[Envelope]:
    out = [envelope("chatshipper", "shop", chatshipper_body(f"{conv}-e0", conv, start,
                                                            conversation_type=conversation_type))]
    for i in range(n_messages):
        out.append(envelope("chatshipper", "shop", chatshipper_body(
            f"{conv}-e{i + 1}", conv, start + timedelta(seconds=i + 1), message=f"{conv}-m{i}",
            text=f"text {i}", conversation_type=conversation_type)))
    return out


# ------------------------------------------------------------------------------ Kafka
async def produce(kafka: KafkaSettings, topics: Topics, envelopes: Sequence[Envelope],
                  producer: AIOKafkaProducer | None = None) -> list[Position]:
    """Produce as the receiver does (topic by aggregate, key = aggregate id); positions back."""
    own = producer is None
    producer = producer or make_producer(kafka)
    if own:
        await producer.start()
    try:
        futures = [await producer.send(topics.for_aggregate(env.aggregate),
                                       value=encode_envelope(env), key=env.record_key)
                   for env in envelopes]
        metas = [await f for f in futures]
    finally:
        if own:
            await producer.stop()
    return [Position(m.topic, m.partition, m.offset) for m in metas]


async def produce_raw(kafka: KafkaSettings, topic: str, key: bytes, value: bytes) -> Position:
    producer = make_producer(kafka)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()
    return Position(meta.topic, meta.partition, meta.offset)


def last_positions(positions: Sequence[Position]) -> dict[tuple[str, int], int]:
    """Next offset per partition after ``positions``."""
    out: dict[tuple[str, int], int] = {}
    for p in positions:
        out[(p.topic, p.partition)] = max(out.get((p.topic, p.partition), 0), p.offset + 1)
    return out


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0,
                     every_s: float = 0.05) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(every_s)


async def applied(store: Store, positions: Sequence[Position]) -> bool:
    live = await store.live_projection()
    if live is None:
        return False
    stored = await store.offsets(live)
    return all(stored.get(tp, 0) >= off for tp, off in last_positions(positions).items())


# ----------------------------------------------------------------------------- runner
@dataclass
class Projector:
    store: Store
    runner: Runner
    metrics: ProjectorMetrics
    watermarks: Watermarks
    dlq_topic: str


@contextlib.asynccontextmanager
async def running_projector(kafka: KafkaSettings, topics: Topics, store_url: str, *,
                            group_id: str, options: ProjectorRunnerOptions | None = None,
                            store: Store | None = None,
                            folder: Callable[[Store, ProjectorMetrics], Folder] | None = None,
                            publisher: Callable[[Store, AIOKafkaProducer], StatePublisher] | None = None,
                            ledger: LedgerWriter | None = None,
                            ) -> AsyncIterator[Projector]:
    """The real runner (real store, real broker, real DLQ producer) in a background task;
    with ``publisher``, publishing states through the producer it is given. It opens sealed
    records with the key store of the test's receiver (tests/kit/receiver_app.py)."""
    own_store = store is None
    store = store or open_store(store_url)
    if own_store:
        await store.open()
    metrics = ProjectorMetrics.create(CollectorRegistry())
    watermarks = Watermarks()
    await KafkaDeadLetters.ensure_topic(kafka, topics)
    producer = make_producer(kafka)
    await producer.start()
    dlq = KafkaDeadLetters(producer, topics, metrics)
    ring = build_key_ring(Settings(kafka=kafka, privacy=privacy_for_test(kafka)))
    runner = Runner(store=store, kafka=kafka, topics=topics, dead_letters=dlq, metrics=metrics,
                    watermarks=watermarks,
                    options=options or ProjectorRunnerOptions(group_id=group_id, poll_timeout_ms=100),
                    folder=folder(store, metrics) if folder else None,
                    publisher=publisher(store, producer) if publisher else None, ring=ring,
                    ledger=ledger)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 30)
        yield Projector(store=store, runner=runner, metrics=metrics, watermarks=watermarks,
                        dlq_topic=dlq.topic)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await ring.close()
        if own_store:
            await store.close()
        await delete_dlq(kafka, topics)


async def delete_dlq(kafka: KafkaSettings, topics: Topics) -> None:
    """Remove this test's dead-letter topic (the ``topics`` fixture removes the event topics)."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topics.dlq("projector")])
    finally:
        await admin.close()


async def view(store: Store, kind: str, id: str) -> dict[str, Any] | None:
    live = await store.live_projection()
    assert live is not None
    raw = await store.get_view(live, kind, id)
    return None if raw is None else orjson.loads(raw)


async def snapshot(store: Store, projection: str) -> dict[str, Any]:
    """Every view of a projection (chats with their messages, visitors, agents), for equality."""
    chats: list[Any] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_chats(projection, limit=200, cursor=cursor)
        chats.extend(orjson.loads(v) for v in page)
        if cursor is None:
            break
    messages: dict[str, list[Any]] = {}
    visitors: dict[str, Any] = {}
    for chat in chats:
        msgs: list[Any] = []
        cursor = None
        while True:
            page, cursor = await store.list_messages(projection, chat["id"], limit=500,
                                                     cursor=cursor)
            msgs.extend(orjson.loads(v) for v in page)
            if cursor is None:
                break
        messages[chat["id"]] = msgs
        visitor = (chat.get("visitor") or {}).get("id")
        if visitor:
            raw = await store.get_view(projection, "visitor", visitor)
            visitors[visitor] = None if raw is None else orjson.loads(raw)
    agents = [orjson.loads(v) for v in await store.list_agents(projection)]
    return {"chats": sorted(chats, key=lambda c: c["id"]), "messages": messages,
            "visitors": visitors, "agents": agents, "counts": await store.counts(projection)}



async def rebuilt_snapshot(kafka: KafkaSettings, topics: Topics, store_url: str = "memory://"
                           ) -> tuple[RebuildReport, dict[str, Any]]:
    """A clean rebuild of the whole log into a fresh store, and its snapshot: what a live
    projection must equal after crashes, restarts or broker failures."""
    clean = open_store(store_url)
    await clean.open()
    ring = build_key_ring(Settings(kafka=kafka, privacy=privacy_for_test(kafka)))
    try:
        report = await rebuild(clean, kafka, topics, out=io.StringIO(), ring=ring)
        return report, await snapshot(clean, report.name)
    finally:
        await ring.close()
        await clean.close()


# ----------------------------------------------------------------------------- config
def write_config(path: Path, kafka: KafkaSettings, store_url: str, *, port: int = 8080,
                 natterly_token: str | None = None, log_level: str = "WARNING") -> Path:
    """A TOML config for a ``parley`` subprocess (the same keys a user writes)."""
    lines = ["[kafka]", f'bootstrap = "{kafka.bootstrap}"', f'topic_prefix = "{kafka.topic_prefix}"',
             f"partitions = {kafka.partitions}", "[http]", f"port = {port}", "[store]",
             f'url = "{store_url}"',
             # Every process of a test shares one master key, as a deployment must.
             "[privacy]", f'master_key = "{TEST_MASTER_KEY}"']
    if natterly_token is not None:
        lines += ["[sources.acme]", 'provider = "natterly"', f'auth_tokens = ["{natterly_token}"]']
    lines.insert(0, f'log_level = "{log_level}"')
    lines.insert(1, f'data_dir = "{path.parent / "data"}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
