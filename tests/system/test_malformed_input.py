"""Malformed parameters and headers against the whole app (receiver, query API, search,
bearer auth; real broker): each is one JSON error, never a 500, never a traceback in the
log, and a rejected webhook writes nothing to Kafka.

Requests are written as raw bytes on a socket: an HTTP client would refuse to send header
bytes that are not UTF-8, which is exactly what a hostile client sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import TopicPartition

from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.process import assemble
from parley.run import run_roles
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from tests.kit.raw_http import close_writer

pytestmark = pytest.mark.kafka

TOKEN = "api-token-for-malformed-input-tests"
SECRET = "whsec_" + base64.b64encode(b"malformed-input-test-key-32-byte").decode()
HUGE = "9" * 5000  # past the 4,300 digits int() converts
NOT_UTF8 = b"\xff\xfe\xc3("


@pytest.fixture
async def server(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
                 ) -> AsyncIterator[TestServer]:
    settings = Settings(
        kafka=kafka_settings, data_dir=str(tmp_path),
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        http=HttpSettings(api_tokens=(TOKEN,)),
        sources={"std": SourceSettings(provider="standard", secrets=(SECRET,)),
                 "shop": SourceSettings(provider="chatshipper", secrets=("chatshipper-secret",))})
    rt = Runtime.from_settings(settings)
    async with TestServer(assemble(rt, run_roles(rt))) as srv:
        yield srv


async def _raw(srv: TestServer, method: str, target: str, headers: list[tuple[bytes, bytes]],
               body: bytes = b"") -> tuple[int, Any]:
    """Send one request as bytes; (status, decoded JSON body)."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    try:
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
                f"Content-Length: {len(body)}".encode()]
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        async with asyncio.timeout(20):
            answer = await reader.read()
    finally:
        await close_writer(writer)
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    assert b"application/json" in header_block.lower(), answer
    return int(status_line.split()[1]), msgspec.json.decode(payload)


def _bearer(token: bytes = TOKEN.encode()) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Bearer " + token)]


CHATS = "/api/chats"
POSITION = "{chat}:0:"  # this test's chat topic is filled in

# (name, path and query, status, error code, what the detail names)
API_CASES = [
    ("limit of 5000 digits", f"{CHATS}?limit={HUGE}", 400, "bad_request", "limit"),
    ("messages limit of 5000 digits", f"{CHATS}/c1/messages?limit={HUGE}", 400, "bad_request",
     "limit"),
    ("min_position offset of 5000 digits", f"{CHATS}/c1?min_position={POSITION}{HUGE}", 400,
     "bad_request", "min_position"),
    ("min_position offset past int64", f"{CHATS}/c1?min_position={POSITION}{2**63}", 400,
     "bad_request", "min_position"),
    ("min_position partition past int32", f"{CHATS}/c1?min_position={{chat}}:{2**31}:0",
     400, "bad_request", "min_position"),
    ("search limit of 5000 digits", f"/api/search?q=x&limit={HUGE}", 400, "bad_request", "limit"),
    ("search cursor offset of 2^63", "/api/search?q=x&cursor="
     + base64.urlsafe_b64encode(f"o{2**63}".encode()).decode().rstrip("="), 400, "bad_request",
     "cursor"),
    ("search cursor offset of 5000 digits", "/api/search?q=x&cursor="
     + base64.urlsafe_b64encode(f"o{HUGE}".encode()).decode().rstrip("="), 400, "bad_request",
     "cursor"),
    ("search from year 0 in UTC", "/api/search?q=x&from=0001-01-01T00:00:00%2B14:00", 400,
     "bad_request", "from"),
    ("search to past year 9999 in UTC", "/api/search?q=x&to=9999-12-31T23:59:59-14:00", 400,
     "bad_request", "to"),
    ("search from of 5000 characters", f"/api/search?q=x&from={HUGE}", 400, "bad_request", "from"),
]


@pytest.mark.parametrize(("name", "target", "status", "code", "names"), API_CASES,
                         ids=[c[0] for c in API_CASES])
async def test_malformed_query_parameters_are_400s_naming_the_parameter(
        server: TestServer, topics: Topics, caplog: pytest.LogCaptureFixture, name: str,
        target: str, status: int, code: str, names: str) -> None:
    got, body = await _raw(server, "GET", target.replace("{chat}", topics.chat), _bearer())
    assert (got, body["error"]) == (status, code), body
    assert body["detail"].startswith(names), body
    _assert_no_traceback(caplog)


async def test_an_authorization_header_that_is_not_utf8_is_a_401(
        server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    for header in (_bearer(NOT_UTF8), [(b"Authorization", NOT_UTF8)],
                   _bearer(TOKEN.encode() + NOT_UTF8)):
        got, body = await _raw(server, "GET", CHATS, header)
        assert (got, body["error"]) == (401, "unauthorized"), body
    _assert_no_traceback(caplog)


def _signed(msg_id: bytes, timestamp: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    """Headers signed with the right key over exactly these bytes: only their form is wrong."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, msg_id + b"." + timestamp + b"." + body, hashlib.sha256).digest()
    return [(b"Content-Type", b"application/json"), (b"webhook-id", msg_id),
            (b"webhook-timestamp", timestamp), (b"webhook-signature", b"v1," + base64.b64encode(mac))]


async def test_malformed_webhook_headers_are_401s_and_write_nothing(
        server: TestServer, kafka_settings: KafkaSettings, topics: Topics,
        caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"type": "message.created", "data": {"chat_id": "c1"}}'
    now = str(int(time.time())).encode()
    cases = [
        ("timestamp of 5000 digits", _signed(b"msg_1", HUGE.encode(), body)),
        ("timestamp past int64", _signed(b"msg_1", str(2**63).encode(), body)),
        ("webhook-id not UTF-8", _signed(b"msg_" + NOT_UTF8, now, body)),
        ("signature not UTF-8", [*_signed(b"msg_1", now, body)[:3],
                                 (b"webhook-signature", b"v1," + NOT_UTF8)]),
    ]
    for name, headers in cases:
        got, answer = await _raw(server, "POST", "/webhooks/std", headers, body)
        assert (got, answer) == (401, {"error": "unauthorized",
                                       "detail": "authentication failed"}), name
    got, answer = await _raw(server, "POST", "/webhooks/shop",
                             [(b"Content-Type", b"application/json"),
                              (b"X-Hub-Signature", b"sha1=" + NOT_UTF8)], body)
    assert got == 401, answer
    _assert_no_traceback(caplog)
    assert await _records_in(kafka_settings, topics) == 0


async def _records_in(kafka: KafkaSettings, topics: Topics) -> int:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics.event_topics for p in range(kafka.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # (aiokafka logs ERROR lines of its own while the projector's group forms: not ours.)
    bad = [r for r in caplog.records
           if r.exc_info or (r.levelno >= logging.ERROR and not r.name.startswith("aiokafka"))]
    assert not bad, [r.getMessage() for r in bad]


async def test_bytes_that_are_not_utf8_in_paths_and_query_values_are_never_a_500(
        server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    targets = ["/api/chats/%FF%FE", "/api/chats/%FF/messages", "/api/visitors/%C3%28",
               "/api/chats?status=%FF", "/api/chats?cursor=%FF", "/api/chats?source=%FF",
               "/api/chats/c1/messages?cursor=%FF", "/api/search?q=%FF%FE",
               "/api/search?q=x&source=%FF", "/api/chats/c1?min_position=%FF:0:0"]
    for target in targets:
        got, body = await _raw(server, "GET", target, _bearer())
        assert got < 500 and isinstance(body, dict), (target, got, body)
    _assert_no_traceback(caplog)
