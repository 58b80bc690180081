"""A fuzzing campaign (hypothesis) against every route of ``parley run`` (webhooks, handshake,
query API, search, health, metrics) and the headers they read, on a real broker and real
127.0.0.1 sockets, the app served by ``parley.http.serve`` in a thread of its own.

For every request: no 5xx (except the documented ``503``/``504`` answers of waiting and
readiness), no configured secret in the answer. For the campaign: no secret and no traceback in
any log record, the event topics hold exactly one record per 2xx webhook (a rejected one wrote
nothing), and traced memory returns to its baseline.

``PARLEY_FUZZ_EXAMPLES`` sets the number of requests (default 300, part of ``make test``;
``make fuzz`` runs 20,000). Requests are raw bytes: a client library would refuse to send what
a hostile client sends (header bytes that are not UTF-8, lengths that lie).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.topics import Topics
from parley.http import bind, serve
from parley.kafka.clients import make_consumer
from parley.kafka.topics import apply_topics
from parley.logs import JsonFormatter, MalformedRequests
from parley.process import assemble
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from receiver.signatures import StandardWebhooks
from tests.kit.run_roles import quick_run_roles

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "300"))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
API_TOKEN = "api-token-fuzz-3b9e51c07d2a"
SHOP_SECRET = "shop-hmac-secret-fuzz-8c2f"
STD_SECRET = "whsec_" + base64.b64encode(b"fuzz-campaign-standard-key-32byt").decode()
SVIX_SECRET = "whsec_" + base64.b64encode(b"fuzz-campaign-svix-key-32-bytes!").decode()
#: Growth of traced memory over the campaign, after a collection, that still counts as "back
#: to its baseline" (caches that fill once: aiohttp's, the prometheus registry's, hypothesis').
MEMORY_BOUND = 8 * 1024 * 1024


def _natterly_tokens() -> tuple[str, ...]:
    tokens = {json.loads(p.read_bytes()).get("auth_token") for p in (FIXTURES / "natterly").glob("*.json")}
    return tuple(sorted(t for t in tokens if isinstance(t, str) and t))


NATTERLY_TOKENS = _natterly_tokens()
SECRETS = (API_TOKEN, SHOP_SECRET, STD_SECRET, STD_SECRET.removeprefix("whsec_"), SVIX_SECRET,
           SVIX_SECRET.removeprefix("whsec_"), *NATTERLY_TOKENS)
SOURCES = {"acme": "natterly", "shop": "chatshipper", "std": "standard", "svx": "standard"}


def _fixture_bodies(provider: str) -> list[Any]:
    return [json.loads(p.read_bytes()) for p in sorted((FIXTURES / provider).glob("*.json"))]


BODIES = {"natterly": _fixture_bodies("natterly"), "chatshipper": _fixture_bodies("chatshipper"),
          "standard": [{"type": "message.created", "timestamp": "2026-01-01T00:00:00Z",
                        "data": {"chat_id": "c-1", "text": "hi"}}]}


# --------------------------------------------------------------------- the server, in a thread
@dataclass
class LogWatch(logging.Handler):
    """Checks every record as it is emitted (keeps none: the campaign must not grow memory)."""

    records: int = 0
    bad: list[str] = field(default_factory=list)
    #: One-line records of requests aiohttp's HTTP parser refused (a control character in a
    #: header, say), answered 400, as parley.logs.MalformedRequests writes them (bounded).
    malformed: int = 0

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.INFO)
        # The production formatter (masks configured secrets): aiohttp's parser errors quote
        # the request's bytes, a bearer token included, into the record itself.
        self.raw = JsonFormatter(SECRETS)

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = self.raw.format(record)
        if any(s in text for s in SECRETS):
            self.bad.append("secret in log: " + text[:200])
        elif "Traceback" in text or record.exc_info:
            self.bad.append(text[:500])
        elif record.levelno >= logging.ERROR and not record.name.startswith("aiokafka"):
            self.bad.append(text[:500])  # aiokafka's own while the group forms: not ours
        elif record.name == "aiohttp.server" and "error" in record.__dict__:
            self.malformed += 1

    def __hash__(self) -> int:
        return id(self)


class LiveParley:
    """``parley run``'s roles served by ``parley.http.serve`` on 127.0.0.1, in a thread with
    its own event loop (so that the hypothesis test drives it synchronously)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.settings, self.group = settings, group
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.sock = bind("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Any, timeout_s: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def start(self) -> None:
        self.thread.start()
        topics = Topics(prefix=self.settings.kafka.topic_prefix)
        self.call(apply_topics(self.settings.kafka, topics.specs(self.settings.kafka.partitions)))
        rt = Runtime.from_settings(self.settings)
        roles = quick_run_roles(rt, self.group, wait_s=0.2, recheck_s=0.05)
        self.served = asyncio.run_coroutine_threadsafe(
            serve(assemble(rt, roles), rt, stop=self.stop, sock=self.sock), self.loop)
        deadline = time.monotonic() + 60
        while self.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)  # poll interval of the readiness condition above

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.served.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def send(self, raw: bytes) -> tuple[int, bytes]:
        """(status, answer); status 0 when the server closed without answering. Returns once
        the answer is whole, not when the server closes: aiohttp lingers (up to
        ``parley.limits.LINGER_S``) reading a request body a handler left unread before it
        closes."""
        answer = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=20) as conn:
                conn.sendall(raw)  # no half-close: aiohttp takes EOF for a client gone
                while not _whole(answer, head_only=raw.startswith(b"HEAD ")) and (
                        chunk := conn.recv(65536)):
                    answer += chunk
        except ConnectionError:
            if not answer:
                return 0, b""  # closed while we sent (it answered early, e.g. 413, and hung up)
        return (int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0), answer

    def records_in_event_topics(self) -> int:
        async def count() -> int:
            kafka = self.settings.kafka
            consumer = make_consumer(kafka, group_id=None)
            await consumer.start()
            try:
                topics = Topics(prefix=kafka.topic_prefix).event_topics
                tps = [TopicPartition(t, p) for t in topics for p in range(kafka.partitions)]
                return sum((await consumer.end_offsets(tps)).values())
            finally:
                await consumer.stop()
        return int(self.call(count()))


def _whole(answer: bytes, *, head_only: bool) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no length: the answer ends when the connection does


@pytest.fixture
def live(kafka_settings: KafkaSettings, tmp_path: Path, unique: str) -> Iterator[LiveParley]:
    settings = Settings(
        kafka=kafka_settings, data_dir=str(tmp_path / "data"),
        # A short body deadline: a request whose Content-Length lies upward waits for it.
        http=HttpSettings(host="127.0.0.1", port=0, api_tokens=(API_TOKEN,), body_timeout_s=0.2,
                          shutdown_timeout_s=2.0),
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        sources={"acme": SourceSettings(provider="natterly", auth_tokens=NATTERLY_TOKENS),
                 "shop": SourceSettings(provider="chatshipper", secrets=(SHOP_SECRET,)),
                 "std": SourceSettings(provider="standard", secrets=(STD_SECRET,)),
                 "svx": SourceSettings(provider="standard", secrets=(SVIX_SECRET,))})
    server = LiveParley(settings, unique)
    server.start()
    try:
        yield server
    finally:
        server.close()


# ------------------------------------------------------------------------------ strategies
@dataclass(frozen=True)
class Request:
    kind: str  # the class of input, for the tally
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    length: int | None  # the Content-Length sent (None: none), maybe not len(body)

    def raw(self) -> bytes:
        head = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: 127.0.0.1",
                b"Connection: close"]
        if self.length is not None:
            head.append(b"Content-Length: " + str(self.length).encode())
        head += [name + b": " + value for name, value in self.headers]
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


def percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


huge_digits = st.integers(min_value=20, max_value=6000).map(lambda n: "9" * n)
numbers = st.one_of(st.integers(-(2**70), 2**70).map(str), huge_digits,
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))
odd_dates = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30",
                     "2026-13-01T00:00:00Z", "1970-01-01T00:00:00+99:99", "now", "T", "-1",
                     # the reports' day bounds: a 500 until the reports refused the last day
                     "9999-12-31", "0001-01-01"]),
    st.dates().map(lambda d: d.isoformat()))
url_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                          exclude_characters="%&#?/ "), max_size=40)
junk_bytes = st.binary(max_size=40).map(percent)
query_value = st.one_of(numbers, odd_dates, url_text, junk_bytes,
                        st.sampled_from(["", "active", "closed", "acme", "x:0:0", "o1"]))
QUERY_NAMES = ["limit", "cursor", "status", "source", "min_position", "q", "from", "to", "type",
               "challenge", "hub.challenge", "agent", "visitor"]
query_name = st.one_of(st.sampled_from(QUERY_NAMES), url_text)


@st.composite
def query(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(query_name, query_value), max_size=4))
    return ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else ""


ids = st.one_of(url_text.filter(bool), junk_bytes.filter(bool), huge_digits,
                st.just("5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"))
API_PATHS = ["/api/chats", "/api/chats/{id}", "/api/chats/{id}/messages", "/api/visitors/{id}",
             "/api/agents", "/api/search", "/api/consumers", "/api/openapi.json", "/healthz",
             "/readyz", "/metrics", "/api/{id}", "/{id}"]
authorization = st.one_of(
    st.just(b"Bearer " + API_TOKEN.encode()), st.just(b""), st.binary(max_size=60),
    st.binary(max_size=30).map(lambda b: b"Bearer " + b),
    st.just(b"Bearer " + API_TOKEN.encode() + b"\xff"), st.just(b"Basic " + API_TOKEN.encode()),
    st.just(b"bearer  " + API_TOKEN.encode().upper()))
header_value = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
content_type = st.one_of(
    st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"text/plain",
                     b"application/json; charset=latin-1", b"", b"*/*", b"application/x-www-form-urlencoded",
                     b"multipart/form-data; boundary=x"]), header_value)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
                      st.floats(allow_nan=False), st.text(max_size=30), huge_digits)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, provider: str) -> bytes:
    """A provider's fixture with some fields replaced, dropped or retyped; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    doc = json.loads(json.dumps(draw(st.sampled_from(BODIES[provider]))))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):  # as sent: some accepted
        path = draw(st.sampled_from(list(_paths(doc))[1:] or [()]))
        if not path:
            break
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_value)
    return json.dumps(doc).encode()


def _standard(family: bytes, secret: str, body: bytes, msg_id: bytes, ts: int
              ) -> list[tuple[bytes, bytes]]:
    sig = StandardWebhooks.sign(secret, msg_id.decode(), ts, body).encode()
    return [(family + b"id", msg_id), (family + b"timestamp", str(ts).encode()),
            (family + b"signature", sig)]


@st.composite
def webhook(draw: st.DrawFn) -> Request:
    configured = st.sampled_from(sorted(SOURCES))
    source = draw(st.one_of(configured, configured, configured, url_text, junk_bytes))
    provider = SOURCES.get(source, draw(st.sampled_from(sorted(BODIES))))
    body = draw(mutated(provider))
    headers: list[tuple[bytes, bytes]] = [(b"Content-Type", draw(content_type) if draw(
        st.integers(0, 4)) == 0 else b"application/json")]
    signed = draw(st.booleans())
    if provider == "chatshipper":
        good = "sha1=" + hmac.new(SHOP_SECRET.encode(), body, hashlib.sha1).hexdigest()
        headers.append((b"X-Hub-Signature", good.encode() if signed else draw(st.one_of(
            header_value, st.just(good.upper().encode()), st.just(b"sha1=" + good.encode())))))
    elif provider == "standard":
        family = b"svix-" if source == "svx" else draw(st.sampled_from([b"webhook-", b"svix-"]))
        secret = SVIX_SECRET if source == "svx" else STD_SECRET
        now = int(time.time())
        ts = now if signed else draw(st.one_of(st.integers(-(2**70), 2**70), st.just(now - 301)))
        msg_id = draw(st.sampled_from([b"msg_", b"msg_fuzz", b"\xff\xfe"]))
        if signed:
            msg_id = b"msg_" + os.urandom(8).hex().encode()  # the receiver drops replays
        try:
            headers += _standard(family, secret, body, msg_id, ts)
        except (UnicodeDecodeError, ValueError, OverflowError):
            headers += [(family + b"id", msg_id), (family + b"timestamp", str(ts).encode())]
        if not signed and draw(st.booleans()):
            headers[-1] = (family + b"signature", draw(header_value))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        headers.append((draw(st.sampled_from([b"Authorization", b"X-Hub-Signature", b"webhook-id",
                                              b"webhook-timestamp", b"webhook-signature",
                                              b"svix-id", b"svix-signature", b"Content-Type",
                                              b"Transfer-Encoding", b"Expect"])),
                        draw(header_value)))
    length = draw(st.one_of(st.just(len(body)), st.just(len(body)), st.just(None),
                            st.integers(0, len(body) + 100)))
    method = draw(st.sampled_from([b"POST", b"POST", b"POST", b"PUT", b"GET"]))
    return Request("webhook", method, b"/webhooks/" + source.encode() + draw(query()).encode(),
                   tuple(headers), body, length)


@st.composite
def handshake(draw: st.DrawFn) -> Request:
    source = draw(st.one_of(st.sampled_from(sorted(SOURCES)), url_text))
    return Request("handshake", b"GET", (f"/webhooks/{source}" + draw(query())).encode(),
                   (), b"", None)


@st.composite
def api(draw: st.DrawFn) -> Request:
    path = draw(st.sampled_from(API_PATHS)).replace("{id}", draw(ids))
    headers = [(b"Authorization", draw(authorization))] if draw(st.integers(0, 5)) else []
    headers += draw(st.lists(st.tuples(st.sampled_from([b"Accept", b"X-Request-Id", b"Content-Type",
                                                        b"If-None-Match", b"Authorization"]),
                                       header_value), max_size=2))
    method = draw(st.sampled_from([b"GET", b"GET", b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS"]))
    kind = "metrics" if path == "/metrics" else "health" if path in (
        "/healthz", "/readyz", "/api/openapi.json") else "api"
    return Request(kind, method, (path + draw(query())).encode(), tuple(headers), b"", None)


requests = st.one_of(webhook(), webhook(), handshake(), api(), api())

# Documented 5xx answers: a projection that has not caught up (504) or a store/broker not ready
# (503) — answers about the world, not failures of the request's handling.
ALLOWED_5XX = {503: (b'"not_ready"', b'"overloaded"', b'"unavailable"'), 504: (b'"timeout"',)}


def _allowed(status: int, answer: bytes) -> bool:
    if status < 500:
        return True
    return any(code in answer for code in ALLOWED_5XX.get(status, ()))


# ------------------------------------------------------------------------------ the campaign
# The server's thread (aiokafka) uses `random` while hypothesis draws a request, which hypothesis
# takes for a strategy's own use of it; the strategies here use none.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_fuzz_campaign_every_route_and_header(live: LiveParley) -> None:
    watch = LogWatch()
    # The watch alone for the campaign: pytest's capture keeps every record, and through its
    # exc_info the frames of every request (the harness's memory, not Parley's).
    root = logging.getLogger()
    captured, level = root.handlers[:], root.level
    root.handlers[:], root.level = [watch], logging.INFO
    # As parley.logs.setup_logging installs it: the parser's refusals as bounded lines.
    server_log = logging.getLogger("aiohttp.server")
    filters = server_log.filters[:]
    server_log.filters[:] = [MalformedRequests()]
    tally: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    accepted = 0
    tracemalloc.start()
    try:
        def one(req: Request) -> None:
            nonlocal accepted
            status, answer = live.send(req.raw())
            tally[(req.kind, f"{status // 100}xx" if status else "closed")] += 1
            if req.kind == "webhook" and 200 <= status < 300:
                accepted += 1
            if not _allowed(status, answer):
                failures.append(f"{status} for {req.raw()[:300]!r}: {answer[-300:]!r}")
            # (aiohttp's 400 for a malformed request quotes its bytes back to their sender.)
            if any(s.encode() in answer and s.encode() not in req.raw() for s in SECRETS):
                failures.append(f"secret in the answer to {req.raw()[:300]!r}")
            if status == 0 and req.length is not None and req.length <= len(req.body):
                failures.append(f"no answer to {req.raw()[:300]!r}")

        campaign = settings(max_examples=EXAMPLES, deadline=None, database=None,
                            suppress_health_check=list(HealthCheck))(given(requests)(one))
        warm = settings(max_examples=30, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))(given(requests)(one))
        # One known-good webhook: the count of records below is then never vacuous.
        good = json.dumps(BODIES["natterly"][0]).encode()
        status, answer = live.send(Request("webhook", b"POST", b"/webhooks/acme", (
            (b"Content-Type", b"application/json"),), good, len(good)).raw())
        assert status == 200, answer
        accepted += 1
        started = time.monotonic()
        warm()  # caches that fill once (routes, metrics label sets, hypothesis' own)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        campaign()
        elapsed_s = time.monotonic() - started
        gc.collect()
        at_end, peak = tracemalloc.get_traced_memory()
        # aiohttp keeps a connection whose request body went unread for up to its lingering
        # time (parley.limits.LINGER_S) before closing it: the memory of the last ones
        # comes back then.
        deadline = time.monotonic() + 20
        while (after := tracemalloc.get_traced_memory()[0]) - baseline >= MEMORY_BOUND:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)  # re-measured until back under the bound, or the deadline
            gc.collect()
    finally:
        tracemalloc.stop()
        root.handlers[:], root.level = captured, level
        server_log.filters[:] = filters
    growth = after - baseline
    print(f"\nfuzz: {sum(tally.values())} requests: {dict(sorted(tally.items()))}; "
          f"{accepted} webhooks accepted; {watch.records} log records "
          f"({watch.malformed} lines for requests aiohttp's parser refused); traced memory "
          f"{baseline / 2**20:.1f} MiB -> {at_end / 2**20:.1f} MiB at the end, {after / 2**20:.1f} MiB "
          f"settled (peak {peak / 2**20:.1f})")
    assert failures == []
    assert watch.bad == []  # no traceback: the parser's refusals are one line each
    windows = 1 + int(elapsed_s // MalformedRequests.INTERVAL_S) + 1  # partial ones at both ends
    assert watch.malformed <= MalformedRequests.PER_INTERVAL * windows
    assert live.records_in_event_topics() == accepted
    assert growth < MEMORY_BOUND, f"traced memory grew by {growth / 2**20:.1f} MiB"


def test_an_expect_header_that_is_not_utf8_is_never_a_500(live: LiveParley) -> None:
    # Found by the campaign: aiohttp's default Expect handler put the header's bytes in a text
    # body and failed to encode them (a 500, on every route); tests/receiver/test_expect.py.
    for target in (b"POST /webhooks/acme", b"GET /webhooks/shop", b"GET /api/chats",
                   b"GET /metrics", b"GET /healthz", b"POST /nowhere"):
        status, answer = live.send(target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                   b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                                   b"Expect: \xb4~\r\n\r\n{}")
        assert status == 400 and b'"bad_request"' in answer, (target, answer)
