"""Provider stories (tests/system/stories/<provider>/*.toml) played through the real pipeline.

One Parley per module, as ``parley run`` assembles it (receiver, projector with its state
publisher, the search consumer and the CRM consumer, on one real HTTP port) over the test
session's real Kafka broker, with the CRM stand-in as the CRM. Each story posts its webhooks,
signed as its provider signs them, to ``/webhooks/{source}`` in order, then checks the fields
it names: projector reads wait for the story's positions (``min_position``); search and CRM
checks wait until the projector has published every state and both consumer groups have
committed the end of every topic they read, then poll with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import TopicPartition

from consumers.role import BuiltinConsumersRole
from parley.kafka.clients import make_admin, make_consumer
from parley.kafka.topics import apply_topics
from parley.process import assemble
from parley.run import run_roles
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.role import ProjectorRole
from tests.kit.crm_standin import SECRET, TOKEN, RunningStandIn, StandInCrm
from tests.kit.story import STORIES, Story, mismatches

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

#: The token inside Natterly's own example webhook (every Natterly story body carries it).
NATTERLY_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"
#: A webhook secret shaped like ChatShipper's documented example (base64, used as-is).
CHATSHIPPER_SECRET = "q7PvLk2sWd9RtYbN4mXc8A=="
DEADLINE_S = 20.0
#: Once search and the CRM have committed the end of their topics, their answers are final
#: within this long (the index's and the stand-in's own writes).
SETTLED_S = 5.0

#: Stories that fail because a fold rule is missing on this branch (another branch adds it).
NEEDS: dict[str, str] = {}


@dataclass
class Parley:
    url: str
    http: aiohttp.ClientSession
    crm: StandInCrm
    kafka: KafkaSettings
    projector: ProjectorRole
    consumers: BuiltinConsumersRole

    async def get(self, path: str, **params: str) -> Any:
        async with self.http.get(self.url + path, params=params) as resp:
            assert resp.status == 200, f"GET {path} {params}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def settled(self) -> None:
        """Wait until every committed state is published and the search and CRM groups have
        committed the end of every partition they read."""
        await _until(lambda: _outbox_empty(self.projector), "the state outbox to drain")
        for runner in self.consumers.service.runners.values():
            await _until(functools.partial(_caught_up, self.kafka, runner.group,
                                           runner.topic_names),
                         f"consumer group {runner.group} to catch up")


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S:g} s waiting for {what}")
        await asyncio.sleep(0.1)


async def _outbox_empty(projector: ProjectorRole) -> bool:
    return not await projector.store.outbox(1)


async def _caught_up(k: KafkaSettings, group: str, topic_names: Sequence[str]) -> bool:
    admin = make_admin(k)
    await admin.start()
    try:
        committed = {tp: m.offset for tp, m in
                     (await admin.list_consumer_group_offsets(group)).items()}
        described = await admin.describe_topics(list(topic_names))
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = make_consumer(k, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def parley(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Parley]:
    prefix = f"s{uuid.uuid4().hex[:12]}"
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=3,
                          replication_factor=1)
    tmp = tmp_path_factory.mktemp("stories")
    async with RunningStandIn(StandInCrm()) as crm:
        settings = Settings(
            kafka=kafka, data_dir=str(tmp), store=StoreSettings(url=f"sqlite:///{tmp}/state.db"),
            sources={
                "natterly": SourceSettings(provider="natterly", auth_tokens=(NATTERLY_TOKEN,)),
                "chatshipper": SourceSettings(provider="chatshipper",
                                              secrets=(CHATSHIPPER_SECRET,))},
            consumers={"crm": {"base_url": crm.url, "auth_value": TOKEN, "signing_secret": SECRET,
                               "timeout_s": 2.0, "max_delay_s": 1.0,
                               "state_path": f"{tmp}/crm.db"}})
        rt = Runtime.from_settings(settings)
        await apply_topics(kafka, rt.topics.specs(kafka.partitions))
        roles = run_roles(rt)  # what `parley run` serves, minus the broker it starts
        runner = web.AppRunner(assemble(rt, roles), access_log=None, shutdown_timeout=1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                p = Parley(url=f"http://127.0.0.1:{port}", http=http, crm=crm.crm, kafka=kafka,
                           projector=next(r for r in roles if isinstance(r, ProjectorRole)),
                           consumers=next(r for r in roles
                                          if isinstance(r, BuiltinConsumersRole)))
                await _until(lambda: _ready(p), "parley to be ready")
                yield p
        finally:
            await runner.cleanup()
            await _drop_topics(kafka)


async def _ready(p: Parley) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with p.http.get(p.url + "/readyz") as resp:
            return resp.status == 200
    return False


async def _drop_topics(k: KafkaSettings) -> None:
    admin = make_admin(k)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(k.topic_prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


# --------------------------------------------------------------------------- playing
def _headers(story: Story, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if story.source == "chatshipper":  # X-Hub-Signature: sha1= HMAC-SHA1(secret, raw body)
        digest = hmac.new(CHATSHIPPER_SECRET.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature"] = f"sha1={digest}"
    return headers


async def _post(p: Parley, story: Story) -> list[str]:
    """Post the story's webhooks in order; the position of each."""
    positions = []
    for i, hook in enumerate(story.webhooks):
        if hook.delay_s:
            await asyncio.sleep(hook.delay_s)  # the provider's own delivery gap
        body = hook.body.encode()
        async with p.http.post(f"{p.url}/webhooks/{story.source}", data=body,
                               headers=_headers(story, body)) as resp:
            answer = await resp.text()
            assert resp.status == 200, (
                f"story {story.name}: webhook {i} ({hook.note}) got {resp.status}: {answer}")
            positions.append((await resp.json())["position"])
    return positions


async def _check_projector(p: Parley, story: Story, positions: list[str]) -> list[str]:
    for position in positions:  # each waits (bounded) until the projector applied it
        await p.get("/api/agents", min_position=position)
    failures: list[str] = []
    for want in story.expect["chat"]:
        got = await p.get(f"/api/chats/{want['id']}")
        failures += mismatches(want, got, f"chat {want['id']}", tuple(want.get("null", ())))
    for want in story.expect["visitor"]:
        got = await p.get(f"/api/visitors/{want['id']}")
        failures += mismatches(want, got, f"visitor {want['id']}", tuple(want.get("null", ())))
    if story.expect["agent"]:
        agents = {a["id"]: a for a in (await p.get("/api/agents"))["items"]}
        for want in story.expect["agent"]:
            failures += mismatches(want, agents.get(want["id"]), f"agent {want['id']}",
                                   tuple(want.get("null", ())))
    for want in story.expect["messages"]:
        got = (await p.get(f"/api/chats/{want['chat']}/messages", limit="100"))["items"]
        failures += mismatches(want["items"], got, f"messages of {want['chat']}")
    for want in story.expect["chats"]:
        listed = {c["id"] for c in (await p.get("/api/chats", limit="100",
                                                **want.get("query", {})))["items"]}
        where = f"/api/chats?{'&'.join(f'{k}={v}' for k, v in want.get('query', {}).items())}"
        failures += [f"{where}: expected {c} listed, got {sorted(listed)}"
                     for c in want.get("listed", ()) if c not in listed]
        failures += [f"{where}: expected {c} not listed, got it"
                     for c in want.get("unlisted", ()) if c in listed]
    return failures


async def _search_failures(p: Parley, story: Story) -> list[str]:
    failures = []
    for want in story.expect["search"]:
        params = {k: v for k, v in want.items() if k not in ("hits", "misses")}
        found = {h["chat_id"] for h in (await p.get("/api/search", limit="100",
                                                    **params))["hits"]}
        where = f"search {params}"
        failures += [f"{where}: expected a hit on {c}, got {sorted(found)}"
                     for c in want.get("hits", ()) if c not in found]
        failures += [f"{where}: expected no hit on {c}, got one"
                     for c in want.get("misses", ()) if c in found]
    return failures


def _crm_failures(p: Parley, story: Story) -> list[str]:
    failures = []
    activities = {a.get("external_id"): a for a in p.crm.activities}
    for want in story.expect["crm"]:
        chat = want["chat"]
        got = activities.get(chat)
        if got is None:
            failures.append(f"crm activity of {chat}: expected one, got none")
            continue
        fields = {k: v for k, v in want.items()
                  if k not in ("chat", "transcript_has", "transcript_lacks", "null")}
        failures += mismatches(fields, got, f"crm activity of {chat}",
                               tuple(want.get("null", ())))
        transcript = str(got.get("transcript") or "")
        failures += [f"crm activity of {chat}.transcript: expected to contain {t!r}, got "
                     f"{transcript!r}" for t in want.get("transcript_has", ())
                     if t not in transcript]
        failures += [f"crm activity of {chat}.transcript: expected not to contain {t!r}, got "
                     f"{transcript!r}" for t in want.get("transcript_lacks", ())
                     if t in transcript]
    return failures


async def _eventually(check: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """The failures of ``check`` once it has none, or after :data:`SETTLED_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLED_S
    while True:
        failures = await check()
        if not failures or loop.time() > deadline:
            return failures
        await asyncio.sleep(0.2)


def _story_params() -> list[Any]:
    params = []
    for path in sorted(STORIES.glob("*/*.toml")):
        name = f"{path.parent.name}/{path.stem}"
        marks = ([pytest.mark.xfail(strict=True, reason=NEEDS[name])] if name in NEEDS else [])
        params.append(pytest.param(path, id=name, marks=marks))
    return params


@pytest.mark.parametrize("path", _story_params())
async def test_story(parley: Parley, path: Path) -> None:
    story = Story.load(path).with_fresh_ids(uuid.uuid4().hex)
    positions = await _post(parley, story)
    failures = await _check_projector(parley, story, positions)
    if story.expect["search"] or story.expect["crm"]:
        await parley.settled()

        async def consumers() -> list[str]:
            return await _search_failures(parley, story) + _crm_failures(parley, story)

        failures += await _eventually(consumers)
    if failures:
        pytest.fail(story.as_written(
            f"story {story.name} ({story.intent}):\n  " + "\n  ".join(failures)), pytrace=False)
