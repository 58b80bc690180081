"""Every kind of bad input gets its JSON error and writes nothing to Kafka."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient

from contracts.topics import Topics
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def _cases(rx: ModuleType) -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    """(name, source, body, headers, status, error code)."""
    json = rx.JSON
    nat = rx.natterly_body()
    cs = rx.chatshipper_body()
    std = rx.standard_body()
    good_sig = rx.hub_signature(rx.CHATSHIPPER_SECRETS[0], cs)
    stale = rx.standard_headers(rx.STANDARD_SECRETS[0], std, timestamp=int(time.time()) - 3600)
    signed_std = rx.standard_headers(rx.STANDARD_SECRETS[0], std)
    bad_json = b'{"id": "1", "event": '
    invalid_cs = b'{"id": 17, "event": "message.update"}'
    return [
        # 401, every provider, every way
        ("natterly wrong token", "acme", rx.with_natterly_token(nat, "guess"), json, 401, "unauthorized"),
        ("natterly no token", "acme", nat, json, 401, "unauthorized"),
        ("natterly token not a string", "acme", nat[:-1] + b', "auth_token": 12345}', json, 401,
         "unauthorized"),
        ("natterly token of another case", "acme",
         rx.with_natterly_token(nat, rx.NATTERLY_TOKENS[0].upper()), json, 401, "unauthorized"),
        ("chatshipper no signature", "shop", cs, json, 401, "unauthorized"),
        ("chatshipper wrong secret", "shop", cs,
         json | {"X-Hub-Signature": rx.hub_signature("not-the-secret", cs)}, 401, "unauthorized"),
        ("chatshipper body changed", "shop", cs + b" ", json | {"X-Hub-Signature": good_sig}, 401,
         "unauthorized"),
        ("chatshipper sha256 prefix", "shop", cs,
         json | {"X-Hub-Signature": good_sig.replace("sha1=", "sha256=")}, 401, "unauthorized"),
        ("standard unsigned", "std", std, json, 401, "unauthorized"),
        ("standard stale timestamp", "std", std, json | stale, 401, "unauthorized"),
        ("standard id changed", "std", std, json | signed_std | {"webhook-id": "msg_other"}, 401,
         "unauthorized"),
        ("standard wrong secret", "std", std,
         json | rx.standard_headers("whsec_" + "QUJD" * 8, std), 401, "unauthorized"),
        # 404
        ("unknown source", "nope", nat, json, 404, "unknown_source"),
        # 415
        ("text/plain", "acme", nat, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("form", "shop", cs, {"Content-Type": "application/x-www-form-urlencoded",
                              "X-Hub-Signature": good_sig}, 415, "unsupported_media_type"),
        ("xml", "acme", b"<a/>", {"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
        ("latin-1 JSON", "acme", nat, {"Content-Type": "application/json; charset=iso-8859-1"}, 415,
         "unsupported_media_type"),
        ("no content type", "acme", nat, {}, 415, "unsupported_media_type"),
        # 400: malformed, and well-formed but invalid (the detail names the JSON path)
        ("natterly malformed", "acme", b'{"event": "ChatInitiated", "auth_token": "x"', json, 400,
         "invalid_body"),
        ("natterly not an object", "acme", b"[1, 2]", json, 400, "invalid_body"),
        ("chatshipper malformed (signed)", "shop", bad_json,
         json | {"X-Hub-Signature": rx.hub_signature(rx.CHATSHIPPER_SECRETS[1], bad_json)}, 400,
         "invalid_body"),
        ("chatshipper invalid id (signed)", "shop", invalid_cs,
         json | {"X-Hub-Signature": rx.hub_signature(rx.CHATSHIPPER_SECRETS[1], invalid_cs)}, 400,
         "invalid_body"),
    ]


async def test_bad_requests_are_rejected_with_json_errors_and_write_nothing(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics) -> None:
    before = await rx.end_offsets(kafka_settings, topics)
    for name, source, body, headers, status, code in _cases(rx):
        resp = await receiver.post(f"/webhooks/{source}", data=body, headers=headers)
        assert resp.status == status, (name, await resp.text())
        assert resp.content_type == "application/json", name
        answer = await resp.json()
        assert set(answer) == {"error", "detail"} and answer["error"] == code, (name, answer)
        if status == 401:  # one generic answer whatever failed: probing learns nothing
            assert answer["detail"] == "authentication failed", name
    invalid = await receiver.post("/webhooks/shop", data=b'{"id": 17, "event": "message.update"}',
                                  headers=rx.JSON | {"X-Hub-Signature": rx.hub_signature(
                                      rx.CHATSHIPPER_SECRETS[1], b'{"id": 17, "event": "message.update"}')})
    assert "$.id" in (await invalid.json())["detail"]
    missing = b'{"payload": {}, "auth_token": "' + rx.NATTERLY_TOKENS[0].encode() + b'"}'
    resp = await receiver.post("/webhooks/acme", data=missing, headers=rx.JSON)
    assert resp.status == 400 and "event" in (await resp.json())["detail"]
    assert await rx.end_offsets(kafka_settings, topics) == before


async def test_body_limit_is_enforced_while_reading(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics) -> None:
    before = await rx.end_offsets(kafka_settings, topics)
    limit = rx.MAX_BODY_BYTES
    filler = b'{"event": "ChatInitiated", "pad": "' + b"x" * limit + b'"}'

    # Declared too large: refused from the Content-Length alone.
    resp = await receiver.post("/webhooks/acme", data=io.BytesIO(filler), headers=rx.JSON)
    assert resp.status == 413 and (await resp.json())["error"] == "body_too_large"

    # Chunked, no Content-Length: refused once the limit is passed, not when the body ends.
    # After twice the limit the sender slows to a crawl; a server waiting for the whole
    # body (or buffering it) would take over 10 s to answer.
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(4 * limit // (16 * 1024)):
            if i * 16 * 1024 > 2 * limit:
                await asyncio.sleep(0.25)
            yield b" " * (16 * 1024)

    started = time.monotonic()
    resp = await receiver.post("/webhooks/acme", data=chunks(), headers=rx.JSON)
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"] == "body_too_large"
    assert time.monotonic() - started < 5.0
    resp.close()

    # Exactly at the limit is fine (it authenticates and is stored).
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    at_limit = body[:-1] + b" " * (limit - len(body)) + b"}"
    assert len(at_limit) == limit
    ok = await receiver.post("/webhooks/acme", data=at_limit, headers=rx.JSON)
    assert ok.status == 200
    after = await rx.end_offsets(kafka_settings, topics)
    assert sum(after.values()) == sum(before.values()) + 1
