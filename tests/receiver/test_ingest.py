"""Accepted webhooks, read back from the real broker: topic, key, envelope, body byte-exact."""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient
from aiokafka.partitioner import murmur2 as kafka_murmur2

from contracts.envelope import Envelope, decode_envelope
from contracts.ingest import natterly_auth_token, parse_webhook
from contracts.member_cut import strip_member
from contracts.position import Position
from contracts.topics import Topics
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def _sent(rx: ModuleType, provider: str, raw: bytes, creds: object, n: int
          ) -> tuple[str, bytes, dict[str, str], bytes]:
    """(source, body to send, headers, body Kafka must hold) for golden body ``raw``."""
    headers = dict(rx.JSON)
    if provider == "natterly":
        if natterly_auth_token(raw) is not None:
            # Its own token is configured (conftest); stored = body minus that member.
            return "acme", raw, headers, strip_member(raw, "auth_token")
        token = rx.NATTERLY_TOKENS[n % 2]
        return "acme", rx.with_natterly_token(raw, token), headers, raw
    if provider == "chatshipper":
        headers["X-Hub-Signature"] = rx.hub_signature(rx.CHATSHIPPER_SECRETS[n % 2], raw)
        return "shop", raw, headers, raw
    headers.update(rx.standard_headers(rx.STANDARD_SECRETS[n % 2], raw, msg_id=f"msg_golden_{n}"))
    return "std", raw, headers, raw


async def _records_by_position(rx: ModuleType, kafka: KafkaSettings, topics: Topics
                               ) -> dict[Position, tuple[bytes | None, bytes]]:
    return {Position(r.topic, r.partition, r.offset): (r.key, r.value)
            for r in await rx.read_all(kafka, topics)}


async def test_every_golden_body_is_stored_byte_exact_under_its_key(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics, credentials: object) -> None:
    cases = [(p, path) for p in ("natterly", "chatshipper", "standard") for path in rx.golden_files(p)]
    if not cases:
        pytest.skip(f"no golden bodies under {rx.FIXTURES} yet")
    expected: dict[Position, tuple[str, str, bytes, Envelope]] = {}
    for n, (provider, path) in enumerate(cases):
        source, body, headers, stored = _sent(rx, provider, path.read_bytes(), credentials, n)
        resp = await receiver.post(f"/webhooks/{source}", data=body, headers=headers)
        answer = await resp.json()
        assert resp.status == 200, (path.name, answer)
        # What the contracts say this body is, independently of the receiver.
        want = parse_webhook(provider, source, body, received_at=datetime.now(UTC),
                             webhook_id=headers.get("webhook-id"))
        assert answer["event_id"] == want.event_id, path.name
        expected[Position.parse(answer["position"])] = (path.name, provider, stored, want)
    records = await _records_by_position(rx, kafka_settings, topics)
    for position, (name, provider, stored, want) in expected.items():
        key, value = records[position]
        env = decode_envelope(value)
        # Byte-exact, minus the token; whitespace around the top-level value is not part
        # of it and cannot survive inside the envelope's JSON (see docs/receiver.md).
        assert bytes(env.body) == stored.strip(b" \t\r\n"), name
        assert env.event_id == want.event_id and env.event_type == want.event_type, name
        assert env.provider == provider and env.aggregate == want.aggregate, name
        assert key == want.record_key and position.topic == topics.for_aggregate(want.aggregate), name
        # The partition any Kafka client picks for this key: toPositive(murmur2(key)) % n.
        assert position.partition == (kafka_murmur2(key) & 0x7FFFFFFF) % kafka_settings.partitions, name
    # Nothing else was written: one record per accepted request.
    assert len(records) == len(expected)


async def test_each_provider_round_trip(rx: ModuleType, receiver: TestClient,  # type: ignore[type-arg]
                                        kafka_settings: KafkaSettings, topics: Topics) -> None:
    chat = "287146e8-68fd-43c5-b79a-911058bc1c9c"
    nat = rx.natterly_body(chat)
    cs = rx.chatshipper_body("774ae370-02cc-11e7-ac41-c38ce8763025", conversation="5c13aa")
    std = rx.standard_body("chat-42")
    answers = []
    for source, body, headers in (
        ("acme", rx.with_natterly_token(nat, rx.NATTERLY_TOKENS[0]), rx.JSON),
        ("shop", cs, rx.JSON | {"X-Hub-Signature": rx.hub_signature(rx.CHATSHIPPER_SECRETS[1], cs)}),
        ("std", std, rx.JSON | rx.standard_headers(rx.STANDARD_SECRETS[1], std, msg_id="msg_std_1")),
    ):
        resp = await receiver.post(f"/webhooks/{source}", data=body, headers=headers)
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        answers.append(await resp.json())
    assert answers[1]["event_id"] == "774ae370-02cc-11e7-ac41-c38ce8763025"
    assert answers[2]["event_id"] == "msg_std_1"
    records = await _records_by_position(rx, kafka_settings, topics)
    want = [(topics.chat, chat.encode(), nat), (topics.chat, b"5c13aa", cs),
            (topics.chat, b"chat-42", std)]
    for answer, (topic, key, body) in zip(answers, want, strict=True):
        position = Position.parse(answer["position"])
        assert position.topic == topic
        got_key, value = records[position]
        assert got_key == key and bytes(decode_envelope(value).body) == body


async def test_redelivered_natterly_webhook_under_another_token_keeps_its_event_id(
        rx: ModuleType, receiver: TestClient) -> None:  # type: ignore[type-arg]
    body = rx.natterly_body()
    ids = set()
    for token in rx.NATTERLY_TOKENS:  # rotation: the same event arrives under each token
        resp = await receiver.post("/webhooks/acme", data=rx.with_natterly_token(body, token),
                                   headers=rx.JSON)
        assert resp.status == 200
        ids.add((await resp.json())["event_id"])
    resp = await receiver.post("/webhooks/acme", data=rx.with_natterly_token(body, rx.NATTERLY_TOKENS[0]),
                               headers={"Content-Type": "application/json; charset=UTF-8"})
    ids.add((await resp.json())["event_id"])
    assert len(ids) == 1
    other = await receiver.post("/webhooks/acme", headers=rx.JSON,
                                data=rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0]))
    assert (await other.json())["event_id"] not in ids


async def test_unknown_event_types_are_stored_not_rejected(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics) -> None:
    nat = rx.natterly_body(event="ChatTranslated")
    resp = await receiver.post("/webhooks/acme", headers=rx.JSON,
                               data=rx.with_natterly_token(nat, rx.NATTERLY_TOKENS[1]))
    assert resp.status == 200
    cs = rx.chatshipper_body().replace(b"message.create.contact.chat", b"hologram.beam")
    resp2 = await receiver.post("/webhooks/shop", data=cs, headers=rx.JSON | {
        "X-Hub-Signature": rx.hub_signature(rx.CHATSHIPPER_SECRETS[0], cs)})
    assert resp2.status == 200
    records = await _records_by_position(rx, kafka_settings, topics)
    types = {decode_envelope(v).event_type for _, v in records.values()}
    assert types == {"ChatTranslated", "hologram.beam"}


async def test_chatshipper_subscription_handshake(rx: ModuleType, receiver: TestClient  # type: ignore[type-arg]
                                                  ) -> None:
    resp = await receiver.get("/webhooks/shop", params={"type": "subscribe", "challenge": "c0ffee-42"})
    assert resp.status == 200 and await resp.text() == "c0ffee-42"
    assert resp.content_type == "text/plain"
    for params, status in (({"type": "subscribe"}, 403), ({"challenge": "x"}, 403),
                           ({"type": "subscribe", "challenge": "x" * 300}, 400)):
        resp = await receiver.get("/webhooks/shop", params=params)
        assert resp.status == status and (await resp.json())["error"]
    handshake = {"type": "subscribe", "challenge": "x"}
    assert (await receiver.get("/webhooks/acme", params=handshake)).status == 405  # natterly
    assert (await receiver.get("/webhooks/nope", params=handshake)).status == 404


async def test_metrics_and_readiness(rx: ModuleType, receiver: TestClient) -> None:  # type: ignore[type-arg]
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    assert (await receiver.post("/webhooks/acme", data=body, headers=rx.JSON)).status == 200
    assert (await receiver.post("/webhooks/acme", data=b"{}", headers=rx.JSON)).status == 401
    assert (await receiver.post("/webhooks/x-unknown", data=b"{}", headers=rx.JSON)).status == 404
    text = await (await receiver.get("/metrics")).text()
    assert 'parley_receiver_requests_total{event_type="ChatInitiated",source="acme",status="200"} 1.0' in text
    assert 'parley_receiver_requests_total{event_type="-",source="acme",status="401"} 1.0' in text
    assert 'parley_receiver_requests_total{event_type="-",source="-",status="404"} 1.0' in text
    assert "x-unknown" not in text  # unconfigured path segments never become labels
    assert 'parley_receiver_produce_seconds_count{topic=' in text
    assert "parley_receiver_in_flight_requests 0.0" in text
    ready = await receiver.get("/readyz")
    assert ready.status == 200 and "kafka-producer" in (await ready.json())["checks"]
