"""Broker failure: a 3-node cluster (replication factor 3, ``min.insync.replicas=2``) loses the
leader of the busiest partition to SIGKILL in the middle of sustained ingest, and gets it back.

Six senders keep posting webhooks (each a new message in one of the chats) to the receiver,
which answers 200 only once Kafka acknowledged the record on the in-sync replicas (acks=all),
and 503 when it could not within its send timeout. The projector (PostgreSQL store) folds all
the while. Then:

* every webhook that got a 200 is in the log, at the position the 200 named, exactly once;
* every one of them is in the projection exactly once (each chat counts each message once);
* nothing but 200 and 503 was answered, and some answers were 503 (the outage was real: the
  dead node's partitions had no leader until the controller fenced it) — a 503'd webhook may
  still have been written later by the producer's retries, and is then in the projection too;
* the projection equals a clean rebuild of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from contracts.domain import MessagePosted
from contracts.envelope import decode_envelope
from contracts.normalise import normalise
from contracts.position import Position
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_admin, make_consumer
from parley.kafka.launcher import LocalKafka
from parley.kafka.topics import apply_topics
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, SourceSettings
from projector.rebuild import event_partitions
from receiver.publisher import PublisherOptions
from receiver.role import ReceiverRole
from tests.kit.live_projector import (
    T0,
    TOKEN,
    applied,
    delete_dlq,
    eventually,
    natterly_body,
    rebuilt_snapshot,
    running_projector,
    snapshot,
)
from tests.kit.processes import JSON, Webhook

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHATS = 12
SEND_TIMEOUT_S = 2.0


def _message_webhook(n: int) -> Webhook:
    chat = f"chat-{n % CHATS}"
    at = T0 + timedelta(seconds=n)
    message = f"{chat}-m{n}"
    body = natterly_body("ChatAccepted", chat, at, agent="ag-1", visitor=f"vis-{n % 5}",
                         messages=[(message, f"message {n}", at)])
    return Webhook(body, chat, message)


async def _read_log(kafka: KafkaSettings, topics: Topics) -> list[ConsumerRecord]:
    tps = await event_partitions(kafka, topics)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "reading the log took too long"
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def test_leader_killed_during_ingest_loses_no_acknowledged_webhook(
        private_kafka: Callable[..., LocalKafka], pg_url: str, unique: str) -> None:
    # (private_kafka is requested first so that it is torn down last.)
    kafka = await asyncio.to_thread(private_kafka, 3)
    state = kafka.load_state()
    assert state is not None
    settings_k = KafkaSettings(bootstrap=state.bootstrap, topic_prefix=unique, partitions=3,
                               replication_factor=3)
    topics = Topics(prefix=unique)
    await apply_topics(settings_k, topics.specs(3))
    admin = make_admin(settings_k)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.chat)])
        configs = {e[0]: e[1] for resp in described for res in resp.resources for e in res[4]}
        assert configs["min.insync.replicas"] == "2"
    finally:
        await admin.close()

    settings = Settings(kafka=settings_k, sources={"acme": SourceSettings(
        provider="natterly", auth_tokens=(TOKEN,))})
    rt = Runtime.from_settings(settings)
    role = ReceiverRole(rt, PublisherOptions(send_timeout_s=SEND_TIMEOUT_S, retry_after_s=1))
    answers: dict[int, tuple[int, str | None, Position | None]] = {}  # n -> (status, event id, pos)
    hooks: dict[int, Webhook] = {}
    stop = asyncio.Event()
    counter = iter(range(1_000_000))

    async with running_projector(settings_k, topics, pg_url, group_id=f"{unique}-projector") as proj, \
            TestClient(TestServer(build_app(rt, [role]))) as client:

        async def sender() -> None:
            while not stop.is_set():
                n = next(counter)
                hooks[n] = hook = _message_webhook(n)
                resp = await client.post("/webhooks/acme", data=hook.body, headers=JSON)
                answer = await resp.json()
                if resp.status == 200:
                    answers[n] = (200, answer["event_id"], Position.parse(answer["position"]))
                else:
                    answers[n] = (resp.status, None, None)
                    await asyncio.sleep(0.05)

        def acked() -> int:
            return sum(1 for status, _, _ in answers.values() if status == 200)

        senders = [asyncio.create_task(sender()) for _ in range(6)]
        try:
            await eventually(lambda: _true(acked() >= 150), "steady ingest", timeout_s=60)
            # The busiest partition so far, and its leader.
            busiest = Counter((p.topic, p.partition) for _, _, p in answers.values() if p).most_common(1)
            (topic, partition), _ = busiest[0]
            admin = make_admin(settings_k)
            await admin.start()
            try:
                [meta] = await admin.describe_topics([topic])
            finally:
                await admin.close()
            leader = next(p["leader"] for p in meta["partitions"] if p["partition"] == partition)
            killed_at = len(answers)
            await asyncio.to_thread(kafka.stop_node, leader, sig=signal.SIGKILL)

            async def resumed() -> bool:
                return sum(1 for n, (s, _, _) in answers.items() if n >= killed_at and s == 200) >= 100

            # Ingest goes on with two replicas: 503s while the dead node's partitions have no
            # leader, then 200s again once new leaders are elected.
            await eventually(resumed, "ingest resumed on two brokers", timeout_s=60)
            await asyncio.to_thread(kafka.start_node, leader)
            restarted_at = len(answers)
            await eventually(lambda: _true(sum(1 for n, (s, _, _) in answers.items()
                                               if n >= restarted_at and s == 200) >= 50),
                             "ingest after the restart", timeout_s=60)
        finally:
            stop.set()
            await asyncio.gather(*senders)

        statuses = Counter(s for s, _, _ in answers.values())
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] >= 1, f"the outage never showed: {statuses}"
        positions = [p for _, _, p in answers.values() if p is not None]
        await eventually(lambda: applied(proj.store, positions), "projection caught up",
                         timeout_s=60, every_s=0.2)
        live = await proj.store.live_projection()
        assert live is not None
        projected = await snapshot(proj.store, live)

    # In the log: every 200 at its position, once; a 503 at most once (a late retry).
    log = await _read_log(settings_k, topics)
    by_position = {Position(r.topic, r.partition, r.offset): r for r in log}
    seen = Counter(decode_envelope(r.value).event_id for r in log)
    for n, (status, event_id, position) in answers.items():
        if status == 200:
            assert position in by_position, f"webhook {n} acknowledged at {position} is missing"
            assert decode_envelope(by_position[position].value).event_id == event_id
            assert seen[event_id] == 1
    assert all(count == 1 for count in seen.values())
    # In the projection: every acknowledged message once, nothing else but late-written 503s.
    in_log = _messages_in(log)
    assert {hooks[n].message for n, (status, _, _) in answers.items() if status == 200} <= in_log
    listed = [m["id"] for msgs in projected["messages"].values() for m in msgs]
    assert len(listed) == len(set(listed)) == len(in_log)
    assert set(listed) == in_log
    assert sum(c["message_count"] for c in projected["chats"]) == len(in_log)

    try:
        _, rebuilt = await rebuilt_snapshot(settings_k, topics)
    finally:
        with contextlib.suppress(Exception):
            await delete_dlq(settings_k, topics)
    assert rebuilt == projected
    print(f"answers: {dict(statuses)}; killed node {leader} (leader of {topic}[{partition}])")
    # Done with this cluster: SIGKILL is enough (the fixture wipes it), and much faster than
    # three controlled shutdowns.
    for node in state.nodes:
        await asyncio.to_thread(kafka.stop_node, node.node_id, sig=signal.SIGKILL)


def _messages_in(log: list[ConsumerRecord]) -> set[str]:
    """Message ids of every webhook in the log (acknowledged or written after a 503)."""
    return {e.message_id for r in log for e in normalise(decode_envelope(r.value))
            if isinstance(e, MessagePosted)}


async def _true(value: bool) -> bool:
    return value
