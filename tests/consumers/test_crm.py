"""The CRM consumer against a local stand-in CRM: signing, retries honouring Retry-After,
the circuit breaker, dead letters after the retry budget, and exactly-once effects through
idempotency keys — also across a SIGKILL of the consumer process. Redirects are never
followed, and a bad signing secret stops the consumer from being built at all."""

from __future__ import annotations

import base64
import contextlib
import signal
import time
import tomllib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from consumers.crm.breaker import CircuitBreaker
from consumers.crm.client import HttpCrmClient, parse_retry_after
from consumers.crm.config import CrmConfig
from consumers.crm.consumer import build, crm_consumer
from consumers.crm.errors import CircuitOpen, CrmRejected, CrmUnavailable
from consumers.crm.signing import sign
from consumers.crm.state import CrmState
from consumers.dlq_ops import dlq_entries
from consumers.registry import ConsumerContext
from contracts.dead_letter import DEAD
from contracts.envelope import Envelope
from contracts.topics import Topics
from parley.errors import SettingsError
from parley.settings import KafkaSettings, Settings, StoreSettings
from projector.state_publisher import StatePublisher
from tests.kit.consumers.events import T0, chat_body, envelope, message, produce
from tests.kit.consumers.helpers import running, wait_for
from tests.kit.consumers.process import ConsumerProcess
from tests.kit.crm_standin import SECRET, TOKEN, Recorder, Redirector, RunningStandIn, Serving, StandInCrm
from tests.kit.live_projector import Projector, running_projector

REPO = Path(__file__).resolve().parents[2]


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_breaker_opens_fails_fast_then_half_opens_one_trial() -> None:
    b = CircuitBreaker(failures=3, reset_s=10)
    for t in range(3):
        assert b.allow(t)
        b.failure(t)
    assert b.state == "open" and not b.allow(5) and b.retry_in_s(5) == 7  # opened at t=2
    assert b.allow(12) and b.state == "half-open" and not b.allow(12.5)  # one trial only
    b.failure(13)
    assert b.state == "open" and not b.allow(20)
    assert b.allow(23)
    b.success()
    assert b.state == "closed" and b.allow(23)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0) == 5.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def _config(url: str, **kw: object) -> CrmConfig:
    defaults: dict[str, object] = {"timeout_s": 0.5, "max_attempts": 6, "max_delay_s": 1.0,
                                   "breaker_failures": 5, "breaker_reset_s": 0.3}
    return CrmConfig(base_url=url, auth_value=TOKEN, signing_secret=SECRET,
                     **(defaults | kw))  # type: ignore[arg-type]


def _projector(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
               ) -> contextlib.AbstractAsyncContextManager[Projector]:
    """The projector, publishing the chat states activities are made of."""
    return running_projector(
        kafka_settings, topics, f"sqlite:///{tmp_path / 'state.db'}",
        group_id=f"{topics.prefix}-projector",
        publisher=lambda store, producer: StatePublisher(store, producer, topics, poll_s=0.2))


@pytest.fixture
async def standin() -> AsyncIterator[RunningStandIn]:
    async with RunningStandIn(StandInCrm()) as running_crm:
        yield running_crm


async def test_client_classifies_answers_and_opens_the_circuit(standin: RunningStandIn) -> None:
    crm = standin.crm
    client = HttpCrmClient(_config(standin.url, breaker_failures=3, breaker_reset_s=60))
    await client.start()
    try:
        crm.faults.extend(["429"])
        with pytest.raises(CrmUnavailable) as e429:
            await client.post("/contacts", {"external_id": "v"}, "k1")
        assert e429.value.retriable and e429.value.retry_after_s == 1.0
        crm.faults.extend(["timeout"])
        t0 = time.monotonic()
        with pytest.raises(CrmUnavailable, match="TimeoutError"):
            await client.post("/contacts", {"external_id": "v"}, "k2")
        assert time.monotonic() - t0 < 2  # the client's timeout, not the CRM's delay
        crm.faults.extend(["500"])
        with pytest.raises(CrmUnavailable, match="500"):
            await client.post("/contacts", {"external_id": "v"}, "k3")
        calls = len(crm.calls)
        with pytest.raises(CircuitOpen) as opened:  # 3 failures in a row: open, no request
            await client.post("/contacts", {"external_id": "v"}, "k4")
        assert len(crm.calls) == calls and 59 < (opened.value.retry_after_s or 0) <= 60
        client.breaker.success()
        crm.faults.extend(["400"])
        with pytest.raises(CrmRejected) as rejected:
            await client.post("/contacts", {"external_id": "v"}, "k5")
        assert not rejected.value.retriable and TOKEN not in str(rejected.value)
        await client.post("/contacts", {"external_id": "v", "email": "v@x.io"}, "k6")
        await client.post("/contacts", {"external_id": "v", "email": "v@x.io"}, "k6")
        assert len(crm.contacts) == 1 and all(c.signed for c in crm.calls)
    finally:
        await client.close()


async def test_a_rejection_quoting_the_token_shows_no_spelling_of_it() -> None:
    """A CRM that quotes the request's credentials back (JSON-escaped) in a 4xx body: the
    error the client raises, which becomes a dead letter, holds no spelling of the token."""
    token = 'Bearer tok"with\\quotes-0123456789'

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"error": "bad credentials",
                                  "got": request.headers.get("Authorization")}, status=401)

    app = web.Application()
    app.router.add_post("/contacts", echo)
    async with Serving(app) as crm:
        client = HttpCrmClient(CrmConfig(base_url=crm.url, auth_value=token, timeout_s=5))
        await client.start()
        try:
            with pytest.raises(CrmRejected) as rejected:
                await client.post("/contacts", {"external_id": "v"}, "k1")
        finally:
            await client.close()
    text = str(rejected.value)
    assert text.endswith('{"error": "bad credentials", "got": "***"}'), text
    assert "tok" not in text, text


def _chat_story(i: int, email: str | None = None) -> list[Envelope]:
    """Start (with visitor and a message), accept, rate, close (with both messages)."""
    cid, vid = f"chat-{i}", f"visitor-{i}"
    vis = {"uuid": vid, "name": f"Visitor {i}", "email_address": email or f"v{i}@example.com"}
    agent = {"uuid": f"agent-{i % 2}", "name": f"Agent {i % 2}"}
    m1 = message(f"m{i}a", f"hello from {i}", at=T0)
    m2 = message(f"m{i}b", f"answer to {i}", by_visitor=False, name="Agent",
                 at=T0 + timedelta(minutes=1))
    steps = [("ChatInitiated", [m1], {}), ("ChatAccepted", [m1], {"agent": agent}),
             ("ChatRated", [m1, m2], {"rating": 5}), ("ChatClosed", [m1, m2], {})]
    return [envelope(chat_body(ev, cid, visitor=vis, messages=msgs, at=T0 + timedelta(minutes=n),
                               **extra))
            for n, (ev, msgs, extra) in enumerate(steps)]


def _synced(crm: StandInCrm, chats: int) -> bool:
    """Every contact, and every chat's activity with its contact's email (the activity is
    sent again, updated, once the contact is known) and its whole transcript (the answer
    may come in a later batch than the greeting)."""
    return (len(crm.contacts) >= chats and len(crm.activities) >= chats
            and all(a.get("contact_email") for a in crm.activities)
            and all("answer to" in a.get("transcript", "") for a in crm.activities))


def _assert_exactly_once(crm: StandInCrm, chats: int) -> None:
    assert sorted(crm.contacts) == sorted(f"v{i}@example.com" for i in range(chats))
    by_chat: dict[str, int] = {}
    for a in crm.activities:
        by_chat[a["external_id"]] = by_chat.get(a["external_id"], 0) + 1
    assert by_chat == {f"chat-{i}": 1 for i in range(chats)}  # each activity exactly once
    for a in crm.activities:
        i = a["external_id"].removeprefix("chat-")
        assert f"hello from {i}" in a["transcript"] and f"answer to {i}" in a["transcript"]
        assert a["rating"] == 5 and a["agent"] == f"Agent {int(i) % 2}"
        assert a["contact_email"] == f"v{i}@example.com" and a["type"] == "chat"
    assert all(c.signed for c in crm.calls)


@pytest.mark.kafka
async def test_crm_in_step_despite_429_500_timeouts_and_slowness(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics,
        standin: RunningStandIn) -> None:
    chats = 6
    await produce(kafka_settings, topics, [e for i in range(chats) for e in _chat_story(i)])
    crm = standin.crm
    crm.faults.extend(["429", "500", "timeout", "slow", "500", "429", "slow"])
    crm.timeout_delay_s = 1.0
    consumer = crm_consumer(_config(standin.url), CrmState(tmp_path / "crm.db"),
                            HttpCrmClient(_config(standin.url)))
    async with _projector(kafka_settings, topics, tmp_path), \
            running(consumer, kafka_settings, topics) as runner:
        await wait_for(lambda: _synced(crm, chats), timeout_s=40,
                       what="contacts and activities")
        assert not runner.dead.state
    _assert_exactly_once(crm, chats)
    assert {c.status for c in crm.calls} >= {200, 429, 500}


@pytest.mark.kafka
async def test_a_closed_chat_s_later_rating_and_message_update_its_one_activity(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics,
        standin: RunningStandIn) -> None:
    story = _chat_story(0)
    await produce(kafka_settings, topics, story)
    crm = standin.crm
    consumer = crm_consumer(_config(standin.url), CrmState(tmp_path / "crm.db"),
                            HttpCrmClient(_config(standin.url)))
    vis = {"uuid": "visitor-0", "name": "Visitor 0", "email_address": "v0@example.com"}
    m1 = message("m0a", "hello from 0", at=T0)
    m2 = message("m0b", "answer to 0", by_visitor=False, name="Agent", at=T0 + timedelta(minutes=1))
    late = message("m0c", "one more thing", at=T0 + timedelta(minutes=9))
    async with _projector(kafka_settings, topics, tmp_path), \
            running(consumer, kafka_settings, topics):
        await wait_for(lambda: _synced(crm, 1), timeout_s=40, what="the chat's activity")
        first = dict(crm.activities[0])
        # After the close: a new rating, then a late message.
        await produce(kafka_settings, topics, [
            envelope(chat_body("ChatRated", "chat-0", visitor=vis, messages=[m1, m2], rating=2,
                               at=T0 + timedelta(minutes=8))),
            envelope(chat_body("ChatRated", "chat-0", visitor=vis, messages=[m1, m2, late],
                               rating=2, at=T0 + timedelta(minutes=9), seq=1))])
        await wait_for(lambda: "one more thing" in crm.activities[0]["transcript"]
                       and crm.activities[0]["rating"] == 2, timeout_s=40,
                       what="the activity updated")
    [activity] = crm.activities  # one activity, updated in place
    assert first["rating"] == 5 and "one more thing" not in first["transcript"]
    assert activity["id"] == first["id"] and activity["external_id"] == "chat-0"
    keys = [c.key for c in crm.calls if c.path == "/activities" and c.status == 200]
    assert len(keys) >= 2 and all(k.startswith("activity:chat-0:") for k in keys)


@pytest.mark.kafka
async def test_after_the_retry_budget_the_event_is_dead_lettered(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics,
        standin: RunningStandIn) -> None:
    await produce(kafka_settings, topics, _chat_story(0, email="doomed@example.com")[:1]
                  + _chat_story(1))
    crm = standin.crm
    crm.always.append((lambda doc: doc.get("email") == "doomed@example.com", "500"))
    cfg = _config(standin.url, max_attempts=3, breaker_failures=100)
    consumer = crm_consumer(cfg, CrmState(tmp_path / "crm.db"), HttpCrmClient(cfg))
    async with _projector(kafka_settings, topics, tmp_path), \
            running(consumer, kafka_settings, topics) as runner:
        await wait_for(lambda: bool(runner.dead.state.entries()) and len(crm.activities) == 1,
                       timeout_s=30, what="one dead letter, the other chat synced")
    [dead] = await dlq_entries(kafka_settings, topics, "crm")
    assert dead.key == "chat-0" and dead.error_type == "CrmUnavailable" and dead.attempts == 3
    assert dead.error == "CRM answered 500 to POST /contacts"
    assert crm.activities[0]["external_id"] == "chat-1"


@pytest.mark.kafka
@pytest.mark.slow
async def test_sigkill_mid_batch_and_restart_leaves_each_contact_and_activity_once(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics,
        standin: RunningStandIn) -> None:
    chats = 40
    await produce(kafka_settings, topics, [e for i in range(chats) for e in _chat_story(i)])
    crm = standin.crm
    crm.delay_s = 0.02  # slow enough to be killed mid-batch
    crm.faults.extend(["500", "429", "slow"] * 3)
    extra = (f'base_url = "{standin.url}"\nauth_value = "{TOKEN}"\n'
             f'signing_secret = "{SECRET}"\ntimeout_s = 2\nmax_delay_s = 1\n')

    def start() -> ConsumerProcess:
        proc = ConsumerProcess(tmp_path, kafka_settings, "crm", max_records=40,
                               extra_toml=extra)
        proc.start()
        return proc

    async with _projector(kafka_settings, topics, tmp_path):
        proc = start()
        try:
            await wait_for(lambda: len(crm.activities) >= 8, timeout_s=45, what="some activities")
            proc.signal(signal.SIGKILL)
            assert await proc.wait_exit() == -signal.SIGKILL
        finally:
            proc.kill()
        proc = start()
        try:
            await wait_for(lambda: _synced(crm, chats), timeout_s=45,
                           what="all contacts and activities")
            proc.signal(signal.SIGTERM)
            assert await proc.wait_exit() == 0
        finally:
            proc.kill()
    # Whatever the killed process had done but not committed was redelivered; the CRM saw
    # those idempotency keys again and did not apply them twice.
    _assert_exactly_once(crm, chats)


@pytest.mark.kafka
async def test_parley_run_role_adds_the_crm_consumer_when_configured(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics, standin: RunningStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from consumers.role import BuiltinConsumersRole
    from parley.http import build_app
    from parley.runtime import Runtime

    side = tmp_path / "consumers.toml"
    side.write_text(f'[consumers.crm]\nbase_url = "{standin.url}"\nauth_value = "{TOKEN}"\n'
                    f'signing_secret = "{SECRET}"\n')
    monkeypatch.setenv("PARLEY_CONSUMERS_CONFIG", str(side))
    await produce(kafka_settings, topics, _chat_story(0))
    from projector.role import ProjectorRole

    rt = Runtime.from_settings(Settings(kafka=kafka_settings, data_dir=str(tmp_path),
                                        store=StoreSettings(url=f"sqlite:///{tmp_path}/state.db")))
    app = build_app(rt, [ProjectorRole(rt), BuiltinConsumersRole(rt)])
    async with TestClient(TestServer(app)) as client:
        await wait_for(lambda: _synced(standin.crm, 1), what="crm synced")
        groups = (await (await client.get("/api/consumers")).json())["groups"]
        assert [g["consumer"] for g in groups] == ["search", "crm"]
    _assert_exactly_once(standin.crm, 1)


_SHORT = "whsec_" + base64.b64encode(b"sixteen byte key").decode()


@pytest.mark.parametrize(("secret", "says"), [
    ("", "signing_secret is empty"),
    ("whsec_", "signing_secret is empty"),
    (_SHORT, "signing_secret is too short"),
    ("whsec_not base64 at all!", "signing_secret is not whsec_ followed by base64"),
    (12345, "at `$.signing_secret`"),
    ([SECRET], "at `$.signing_secret`"),
])
def test_a_bad_signing_secret_fails_when_the_consumer_is_built(
        tmp_path: Path, secret: object, says: str) -> None:
    """At start-up, in one line that never shows the secret; not as one dead letter per event
    (a secret that does not decode) or as silently unsigned requests (an empty one)."""
    ctx = ConsumerContext(settings=Settings(data_dir=str(tmp_path)), name="crm",
                          config={"base_url": "http://127.0.0.1:9/api", "signing_secret": secret})
    with pytest.raises(SettingsError) as built:
        build(ctx)
    message = str(built.value)
    assert message.startswith("invalid [consumers.crm] configuration: ") and says in message
    assert "\n" not in message
    if isinstance(secret, str) and secret.removeprefix("whsec_"):
        assert secret.removeprefix("whsec_") not in message
    if isinstance(secret, str):  # built in code rather than from a table: the same check
        with pytest.raises(ValueError, match=says):
            CrmConfig(base_url="http://127.0.0.1:9/api", signing_secret=secret)


@pytest.mark.parametrize(("value", "says"), [
    ("", "auth_value is empty"),
    ("   ", "auth_value is empty"),
    ("Bearer replace-with-the-crm-api-key", "auth_value looks like a placeholder"),
    ("Bearer <your key>", "auth_value looks like a placeholder"),
])
def test_an_empty_or_placeholder_auth_value_fails_when_the_consumer_is_built(
        tmp_path: Path, value: str, says: str) -> None:
    """An empty auth_value used to send every request with no authentication, silently; the
    example file's placeholder used to be sent as the CRM key. Both stop start-up now, in
    one line."""
    ctx = ConsumerContext(settings=Settings(data_dir=str(tmp_path)), name="crm",
                          config={"base_url": "http://127.0.0.1:9/api", "auth_value": value})
    with pytest.raises(SettingsError) as built:
        build(ctx)
    message = str(built.value)
    assert message.startswith("invalid [consumers.crm] configuration: ") and says in message
    assert "\n" not in message
    CrmConfig(base_url="http://127.0.0.1:9/api", auth_value="Bearer 7d1f0c2e9a4b")  # a real one


def test_the_example_secrets_file_crm_table_is_refused(tmp_path: Path) -> None:
    """deploy/k8s/secrets.example.yaml applied unchanged must not start a CRM consumer that
    sends the example's words as its API key."""
    docs = yaml.safe_load_all((REPO / "deploy/k8s/secrets.example.yaml").read_text())
    [crm] = [d for d in docs if d and d["metadata"]["name"] == "parley-crm"]
    [toml_text] = crm["stringData"].values()
    table = tomllib.loads(toml_text)["consumers"]["crm"]
    ctx = ConsumerContext(settings=Settings(data_dir=str(tmp_path)), name="crm", config=table)
    with pytest.raises(SettingsError, match="auth_value looks like a placeholder"):
        build(ctx)


async def test_parley_consumer_crm_with_a_bad_signing_secret_exits_with_one_line(
        tmp_path: Path) -> None:
    nowhere = KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="unused")
    proc = ConsumerProcess(tmp_path, nowhere, "crm", extra_toml=(
        'base_url = "http://127.0.0.1:9/api"\nsigning_secret = ""\n'))
    proc.start()
    try:
        assert await proc.wait_exit(timeout_s=30) == 1
    finally:
        proc.kill()
    [line] = proc.log.read_text().splitlines()
    assert line.startswith("parley: error: invalid [consumers.crm] configuration: "
                           "signing_secret is empty")


REDIRECTS = (301, 302, 303, 307, 308)


@pytest.mark.kafka
async def test_a_redirect_is_never_followed_and_is_dead_lettered_naming_the_location(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    """301/302/303 would turn the POST into a GET whose 2xx looks like a delivery; 307/308
    would re-send the transcript and the auth header to another origin. Neither happens: the
    event is dead-lettered at once (no retries) with the Location in its error."""
    elsewhere = Recorder()
    async with Serving(elsewhere.app()) as landing:
        moved = Redirector(target=landing.url, status_for=lambda doc: REDIRECTS[
            int(str(doc["external_id"]).rpartition("-")[2])])
        async with Serving(moved.app()) as crm:
            await produce(kafka_settings, topics,
                          [e for i in range(len(REDIRECTS)) for e in _chat_story(i)])
            cfg = _config(crm.url + "/api", auth_header="X-Crm-Key", breaker_failures=100)
            consumer = crm_consumer(cfg, CrmState(tmp_path / "crm.db"), HttpCrmClient(cfg))
            async with running(consumer, kafka_settings, topics) as runner:
                await wait_for(lambda: sum(e.kind == DEAD for e in runner.dead.state.entries())
                               == len(REDIRECTS) or bool(elsewhere.requests),
                               timeout_s=40, what="a dead letter per chat")
    assert elsewhere.requests == []  # no transcript, no auth header, no GET: nothing at all
    assert len(moved.requests) == len(REDIRECTS)  # each tried once: a redirect is not retried
    assert all(r.headers.get("X-Crm-Key") == TOKEN for r in moved.requests)
    dead = {e.key: e for e in await dlq_entries(kafka_settings, topics, "crm") if e.kind == DEAD}
    assert sorted(dead) == [f"chat-{i}" for i in range(len(REDIRECTS))]
    for i, status in enumerate(REDIRECTS):
        entry = dead[f"chat-{i}"]
        assert entry.error_type == "CrmRedirected" and entry.attempts == 1
        assert (entry.error or "").startswith(
            f"CRM answered {status} to POST /contacts with a redirect to "
            f"{landing.url}/moved/{status}")
        assert TOKEN not in (entry.error or "")
