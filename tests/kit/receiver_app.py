"""A running receiver app on a real broker for tests: configured sources, signing helpers,
webhook bodies, and readers of what the test topics hold. Its fixtures (``rx``,
``credentials``, ``make_receiver``, ``receiver``) are registered in tests/conftest.py."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.envelope import decode_envelope, encode_envelope
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_consumer
from parley.privacy.config import build_key_ring
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, PrivacySettings, Settings, SourceSettings
from parley.testing.scratch import scratch_dir
from receiver.publisher import PublisherOptions
from receiver.rejections import RejectionLimits
from receiver.role import ReceiverRole
from receiver.signatures import StandardWebhooks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
MAX_BODY_BYTES = HttpSettings().max_body_bytes  # the default limit, 1 MiB

NATTERLY_TOKENS = ("nat-token-current-7f3a9c", "nat-token-previous-41be02")
CHATSHIPPER_SECRETS = ("zICWczLmAOEDvh1DiPGSHw==", "cs-secret-rotated-9d1e")
STANDARD_SECRETS = ("whsec_" + base64.b64encode(b"standard-key-number-one!").decode(),
                    "whsec_" + base64.b64encode(b"standard-key-number-two!").decode())


@dataclass(frozen=True)
class Credentials:
    """Every credential the test configuration holds (golden bodies may add tokens)."""

    natterly: tuple[str, ...]
    chatshipper: tuple[str, ...] = CHATSHIPPER_SECRETS
    standard: tuple[str, ...] = STANDARD_SECRETS

    def all(self) -> tuple[str, ...]:
        return self.natterly + self.chatshipper + self.standard


def golden_files(provider: str) -> list[Path]:
    return sorted((FIXTURES / provider).rglob("*.json")) if (FIXTURES / provider).is_dir() else []


def golden_natterly_tokens() -> tuple[str, ...]:
    """Tokens the golden Natterly bodies carry: configured too, so the bodies authenticate."""
    class _T(msgspec.Struct):
        auth_token: object = None

    tokens: list[str] = []
    for path in golden_files("natterly"):
        try:
            token = msgspec.json.decode(path.read_bytes(), type=_T).auth_token
        except (msgspec.DecodeError, RecursionError):
            continue
        if isinstance(token, str) and token and token not in tokens:
            tokens.append(token)
    return tuple(tokens)


# ---------------------------------------------------------------------------- signing
def hub_signature(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def standard_headers(secret: str, body: bytes, msg_id: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": StandardWebhooks.sign(secret, msg_id, ts, body)}


def with_natterly_token(body: bytes, token: str) -> bytes:
    """``body`` with ``"auth_token"`` appended as its last member (stripping restores it)."""
    end = body.rstrip().rindex(b"}")
    inner = body[:end].rstrip()
    sep = b"" if inner.endswith(b"{") else b","
    return inner + sep + b' "auth_token": ' + msgspec.json.encode(token) + body[len(inner):]


JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------------------- bodies
def natterly_body(chat: str | None = None, event: str = "ChatInitiated") -> bytes:
    chat = chat or str(uuid.uuid4())
    return (b'{"event": "' + event.encode() + b'", "timestamp": 1517228896, "payload": {"chat": '
            b'{"uuid": "' + chat.encode() + b'", "status": "Initiated", "subject": "caf\\u00e9 \xe2\x98\x95",'
            b' "closed_at": 0, "city": null}, "messages": []}}')


def chatshipper_body(event_id: str | None = None, conversation: str = "5c138790ec944f05ff5f6d78"
                     ) -> bytes:
    event_id = event_id or str(uuid.uuid4())
    return msgspec.json.encode({
        "id": event_id, "event": "message.create.contact.chat",
        "timestamp": "2018-12-19T19:09:01Z", "organization": "5c138790ec944f05ff5f6d77",
        "activity": {"type": "Create", "object": {
            "id": "https://api.web1on1.chat/v2/messages/5c1a9b2dec944f05ff5f6d80", "type": "Object"}},
        "data": {"conversation": {"id": conversation, "type": "contact"},
                 "message": {"id": "5c1a9b2dec944f05ff5f6d80", "conversation": conversation,
                             "type": "chat", "text": "hello"}}})


def standard_body(chat_id: str = "chat-42") -> bytes:
    return msgspec.json.encode({"type": "message.created", "timestamp": "2026-01-02T03:04:05Z",
                                "data": {"chat_id": chat_id, "text": "hi"}})


# ---------------------------------------------------------------------------- the app
@pytest.fixture
def rx() -> ModuleType:
    """This module: its helpers (signing, bodies, Kafka readers), for the tests that take
    them with the fixtures."""
    return sys.modules[__name__]


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(natterly=NATTERLY_TOKENS + golden_natterly_tokens())


#: The master key of every test receiver (a test value: never use it anywhere else).
TEST_MASTER_KEY = "cGFybGV5LXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE="
_KEYS_DIR = scratch_dir(f"parley-test-keys-{os.getpid()}-")  # this test process's key stores


def privacy_for_test(kafka: KafkaSettings) -> PrivacySettings:
    """Encryption on (the default), with the test master key and a key store of this test's
    own (named by its topic prefix), which :func:`read_all` opens records with."""
    return PrivacySettings(master_key=TEST_MASTER_KEY,
                           key_store=f"sqlite:///{_KEYS_DIR / kafka.topic_prefix}.db")


def receiver_settings(kafka: KafkaSettings, creds: Credentials) -> Settings:
    return Settings(
        kafka=kafka,
        privacy=privacy_for_test(kafka),
        http=HttpSettings(max_body_bytes=MAX_BODY_BYTES, shutdown_timeout_s=5.0),
        sources={
            "acme": SourceSettings(provider="natterly", auth_tokens=creds.natterly),
            "shop": SourceSettings(provider="chatshipper", secrets=creds.chatshipper),
            "std": SourceSettings(provider="standard", secrets=creds.standard, tolerance_s=300),
        })


AppFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def make_receiver() -> AsyncIterator[AppFactory]:
    """Factory: ``await make_receiver(settings, options=None, rejection_limits=None)`` → a
    TestClient of a running receiver app; every one is closed (graceful shutdown included)
    when the test ends."""
    clients: list[TestClient] = []  # type: ignore[type-arg]

    async def start(settings: Settings, options: PublisherOptions | None = None,
                    rejection_limits: RejectionLimits | None = None
                    ) -> TestClient:  # type: ignore[type-arg]
        rt = Runtime.from_settings(settings)
        app = build_app(rt, [ReceiverRole(rt, options, rejection_limits)])
        server = TestServer(app)
        # As parley.http.serve runs it: no access log (paths are the client's words), and
        # the configured drain time for in-flight requests on shutdown.
        await server.start_server(access_log=None,
                                  shutdown_timeout=settings.http.shutdown_timeout_s)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def receiver(make_receiver: AppFactory, kafka_settings: KafkaSettings, topics: Topics,
                   credentials: Credentials) -> TestClient:  # type: ignore[type-arg]
    return await make_receiver(receiver_settings(kafka_settings, credentials))


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float,
                     interval_s: float = 0.1) -> None:
    """Poll ``check`` until it is true; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(interval_s)


# ---------------------------------------------------------------------------- reading Kafka
async def end_offsets(kafka: KafkaSettings, topics: Topics) -> dict[TopicPartition, int]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics.event_topics for p in range(kafka.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def read_all(kafka: KafkaSettings, topics: Topics, timeout_s: float = 30.0
                   ) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """Every record the event topics hold now, from the beginning, opened: a sealed record's
    value is what the receiver would have written without encryption (the body back byte
    for byte; docs/privacy.md), so tests of what was stored read the same either way."""
    return await open_records(kafka, await read_sealed(kafka, topics, timeout_s))


async def open_records(kafka: KafkaSettings, records: list[ConsumerRecord]  # type: ignore[type-arg]
                       ) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """``records`` with each sealed envelope opened with the test's key store."""
    envelopes = {n: decode_envelope(r.value) for n, r in enumerate(records)
                 if r.value is not None and b'"sealed":' in r.value}
    if not envelopes:
        return records
    settings = Settings(kafka=kafka, privacy=privacy_for_test(kafka))
    ring = build_key_ring(settings)
    try:
        await ring.load(str(e.subject) for e in envelopes.values())
        out = list(records)
        for n, env in envelopes.items():
            opened = msgspec.structs.replace(ring.open(env), subject=msgspec.UNSET)
            out[n] = dataclasses.replace(records[n], value=encode_envelope(opened))
        return out
    finally:
        await ring.close()


async def read_sealed(kafka: KafkaSettings, topics: Topics, timeout_s: float = 30.0
                      ) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """Every record the event topics hold now, from the beginning, as stored."""
    ends = await end_offsets(kafka, topics)
    consumer = make_consumer(kafka, group_id=None, isolation_level="read_uncommitted")
    await consumer.start()
    got: list[ConsumerRecord] = []  # type: ignore[type-arg]
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning()
        async with asyncio.timeout(timeout_s):
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    got.extend(batch.get(tp, []))
    finally:
        await consumer.stop()
    return got
