"""Every 4xx the receiver answers is recorded on the rejections topic: with its reason, never
with a secret, bounded under a flood, and never in the way of an answer."""

from __future__ import annotations

import asyncio
import io
import time
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.ops import Rejection, decode_rejection
from contracts.topics import Topics
from parley.http import RUNTIME
from parley.kafka.clients import make_consumer
from parley.settings import KafkaSettings
from receiver.rejections import RejectionLimits
from tests.kit.receiver_app import eventually

pytestmark = pytest.mark.kafka


async def _records(k: KafkaSettings, topic: str, at_least: int, timeout_s: float = 20.0
                   ) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """The topic's records, from the start, once it holds ``at_least`` of them."""
    consumer = make_consumer(k, group_id=None)
    await consumer.start()
    got: list[ConsumerRecord] = []  # type: ignore[type-arg]
    tp = TopicPartition(topic, 0)
    try:
        async def created() -> bool:  # the writer creates the topic in the background
            return topic in await consumer.topics()

        await eventually(created, timeout_s)
        async with asyncio.timeout(timeout_s):
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while len(got) < at_least:
                got.extend((await consumer.getmany(tp, timeout_ms=200)).get(tp, []))
    finally:
        await consumer.stop()
    return got


def _cases(rx: ModuleType) -> list[tuple[str, str, bytes, dict[str, str], int, str, str | None]]:
    """(source, path source, body, headers, status, reason, field): one of each kind."""
    json = rx.JSON
    nat, cs, std = rx.natterly_body(), rx.chatshipper_body(), rx.standard_body()
    stale = rx.standard_headers(rx.STANDARD_SECRETS[0], std, timestamp=int(time.time()) - 3600)
    return [
        ("acme", "acme", rx.with_natterly_token(nat, "guessed-token-5d7c1e"), json, 401,
         "no_matching_secret", "auth_token"),
        ("shop", "shop", cs, json | {"X-Hub-Signature": rx.hub_signature("wrong-secret-8e2f", cs)},
         401, "no_matching_secret", "X-Hub-Signature"),
        ("shop", "shop", cs, json, 401, "missing_header", "X-Hub-Signature"),
        ("std", "std", std, json | stale, 401, "timestamp_outside_tolerance", "webhook-timestamp"),
        ("-", "nosuch-source", nat, json, 404, "unknown_source", None),
        ("acme", "acme", nat, {"Content-Type": "text/plain"}, 415, "unsupported_media_type", None),
        ("acme", "acme", b'{"pad": "' + b"x" * rx.MAX_BODY_BYTES + b'"}', json, 413,
         "body_too_large", None),
        ("acme", "acme", b'{"event": ', json, 400, "invalid_body", None),
    ]


async def test_each_kind_of_rejection_is_recorded_with_its_reason_and_no_secret(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics) -> None:
    cases = _cases(rx)
    sent_secrets: list[str] = []
    for source, path, body, headers, status, _, _ in cases:
        resp = await receiver.post(f"/webhooks/{path}", data=io.BytesIO(body), headers=headers)
        assert resp.status == status, (source, await resp.text())
        sent_secrets += [v.removeprefix("sha1=").removeprefix("v1,") for k, v in headers.items()
                         if k.lower() in ("x-hub-signature", "webhook-signature")]
    # Authenticated but invalid: these alone keep (a trimmed copy of) their body.
    token = rx.NATTERLY_TOKENS[0]
    nat_invalid = b'{"payload": {"note": "kept for the operator"}, "auth_token": "' + token.encode() + b'"}'
    cs_invalid = b'{"id": 17, "event": "message.update", "note": "' + b"y" * 5000 + b'"}'
    cs_sig = rx.hub_signature(rx.CHATSHIPPER_SECRETS[1], cs_invalid)
    for path, body, headers in (("acme", nat_invalid, rx.JSON),
                                ("shop", cs_invalid, rx.JSON | {"X-Hub-Signature": cs_sig})):
        resp = await receiver.post(f"/webhooks/{path}", data=body, headers=headers)
        assert resp.status == 400, await resp.text()
    sent_secrets.append(cs_sig.removeprefix("sha1="))

    raw = await _records(kafka_settings, topics.rejections, len(cases) + 2)
    got = [decode_rejection(r.value) for r in raw]
    assert [(r.source, r.status, r.reason, r.field) for r in got[:len(cases)]] == [
        (source, status, reason, field) for source, _, _, _, status, reason, field in cases]
    assert all(r.count == 1 and r.sampled for r in got)
    assert [r.key for r in raw] == [r.source.encode() for r in got]
    unknown = got[4]
    assert unknown.requested == "nosuch-source" and "acme" in (unknown.detail or "")
    # Unauthenticated requests keep no body, whatever they were.
    assert all(r.body is None and r.body_bytes is None for r in got[:len(cases)])
    nat_kept, cs_kept = got[len(cases):]
    assert nat_kept.reason == "invalid_body" and nat_kept.body is not None
    assert "kept for the operator" in nat_kept.body and "auth_token" not in nat_kept.body
    assert nat_kept.body_bytes == len(nat_invalid)
    assert cs_kept.body is not None and cs_kept.body.startswith('{"id": 17')
    assert len(cs_kept.body.encode()) == RejectionLimits().body_bytes
    assert cs_kept.body_bytes == len(cs_invalid) and "$.id" in (cs_kept.detail or "")

    everything = b"\n".join(r.value + (r.key or b"") + b"".join(v for _, v in r.headers)
                            for r in raw)
    for secret in (*rx.Credentials(natterly=rx.NATTERLY_TOKENS).all(), *sent_secrets):
        assert secret.encode() not in everything, "a credential reached the rejections topic"
    for header in ("X-Hub-Signature", "webhook-signature", "webhook-id"):
        assert b'"' + header.encode() + b'":' not in everything  # a field name, never a header


async def test_a_flood_is_counted_in_summaries_not_recorded_and_accepted_webhooks_flow(
        rx: ModuleType, make_receiver: object, kafka_settings: KafkaSettings,
        topics: Topics, credentials: object) -> None:
    limits = RejectionLimits(per_s=0.0, burst=3, summary_s=0.3)
    settings = rx.receiver_settings(kafka_settings, credentials)
    receiver: TestClient = await make_receiver(settings, rejection_limits=limits)  # type: ignore[operator, type-arg]
    cs = rx.chatshipper_body()
    forged = rx.JSON | {"X-Hub-Signature": rx.hub_signature("wrong-secret-8e2f", cs)}
    good = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    before = await rx.end_offsets(kafka_settings, topics)

    async def post(path: str, body: bytes, headers: dict[str, str]) -> int:
        resp = await receiver.post(f"/webhooks/{path}", data=body, headers=headers)
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*[post("shop", cs, forged) for _ in range(60)],
                                    *[post("acme", good, rx.JSON) for _ in range(10)])
    assert statuses == [401] * 60 + [200] * 10
    after = await rx.end_offsets(kafka_settings, topics)
    assert sum(after.values()) - sum(before.values()) == 10  # every accepted webhook stored

    registry = receiver.server.app[RUNTIME].registry

    def noted(recorded: str) -> float:
        return registry.get_sample_value("parley_receiver_rejections_total",
                                         {"source": "shop", "recorded": recorded}) or 0.0

    assert (noted("one"), noted("summary")) == (3, 57)
    got: list[Rejection] = []

    async def whole() -> bool:
        got[:] = [decode_rejection(r.value)
                  for r in await _records(kafka_settings, topics.rejections, 4)]
        return sum(r.count for r in got) >= 60

    await rx.eventually(whole, 20.0)
    assert sum(r.count for r in got) == 60
    assert len([r for r in got if r.sampled]) == 3  # the burst, one record each
    summaries = [r for r in got if not r.sampled]
    assert summaries and all((r.source, r.status, r.reason) == ("shop", 401, "no_matching_secret")
                             for r in summaries)
    assert len(summaries) < 10  # one per kind and interval, however large the flood


async def test_recording_never_delays_an_answer_even_with_kafka_unreachable(
        rx: ModuleType, make_receiver: object, credentials: object) -> None:
    # Nothing listens on this port: the writer never connects, and the queue fills.
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{_closed_port()}", topic_prefix="unreachable",
                         partitions=1, replication_factor=1, request_timeout_ms=2000)
    limits = RejectionLimits(per_s=1000.0, burst=1000, queue=4)
    receiver: TestClient = await make_receiver(  # type: ignore[operator, type-arg]
        rx.receiver_settings(dead, credentials), rejection_limits=limits)
    cs = rx.chatshipper_body()
    forged = rx.JSON | {"X-Hub-Signature": rx.hub_signature("wrong-secret-8e2f", cs)}
    started = time.monotonic()
    for _ in range(20):
        resp = await receiver.post("/webhooks/shop", data=cs, headers=forged)
        assert resp.status == 401
    assert time.monotonic() - started < 5.0
    registry = receiver.server.app[RUNTIME].registry
    counts = {rec: registry.get_sample_value("parley_receiver_rejections_total",
                                             {"source": "shop", "recorded": rec})
              for rec in ("one", "summary")}
    assert counts == {"one": 4, "summary": 16}  # the queue's bound, then counted


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
