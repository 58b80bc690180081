"""Every kind of bad input gets its JSON error and writes nothing to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient

from contracts.topics import Topics
from parley.logs import JsonFormatter
from parley.settings import KafkaSettings, Settings

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
        # A compressed body: no provider sends one, and a signature would be ambiguous (over
        # which bytes?). It was a 400 "Input data was truncated" (aiohttp inflated it, the
        # handler read Content-Length bytes of the result).
        ("gzip", "acme", gzip.compress(rx.with_natterly_token(nat, rx.NATTERLY_TOKENS[0])),
         json | {"Content-Encoding": "gzip"}, 415, "unsupported_media_type"),
        ("x-custom", "acme", nat, json | {"Content-Encoding": "X-Custom"}, 415,
         "unsupported_media_type"),
        # Codings aiohttp would inflate with a library that is not installed (brotli,
        # zstd on Python 3.11): aiohttp's own text 400 before any Parley code ran.
        ("br", "acme", nat, json | {"Content-Encoding": "br"}, 415, "unsupported_media_type"),
        ("zstd", "acme", nat, json | {"Content-Encoding": "zstd"}, 415,
         "unsupported_media_type"),
        ("gzip, br", "acme", nat, json | {"Content-Encoding": "gzip, br"}, 415,
         "unsupported_media_type"),
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


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip", "deflate", "X-Custom"])
async def test_a_content_encoding_is_a_json_415_before_the_body_is_read(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics, coding: str) -> None:
    """Whatever the coding, Parley answers (aiohttp inflates nothing) before reading the
    body: a chunked body that goes on for longer than the test waits, and is over the body
    limit, gets its 415 (not a 413), and nothing is published."""
    before = await rx.end_offsets(kafka_settings, topics)
    answered = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"\x1b\x00" * (rx.MAX_BODY_BYTES // 2 + 1)  # over the limit already
        # The rest only once the answer has come: a server reading the body first would
        # wait here until the timeout, and answer 413 or 408.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), 30)
        yield b"\x00"

    started = time.monotonic()
    resp = await receiver.post("/webhooks/acme", data=endless(),
                               headers=rx.JSON | {"Content-Encoding": coding})
    answered.set()
    assert resp.status == 415, await resp.text()
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "error": "unsupported_media_type",
        "detail": "Content-Encoding is not supported: send the body uncompressed"}
    assert time.monotonic() - started < 10
    resp.close()
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


def _auth_failures(rx: ModuleType) -> list[tuple[str, str, bytes, dict[str, str], str, str,
                                                 list[str]]]:
    """(name, source, body, headers, logged reason, logged field, what was presented): each
    check that can fail, per provider. What was presented must not reach the log either."""
    json = rx.JSON
    nat, cs, std = rx.natterly_body(), rx.chatshipper_body(), rx.standard_body()
    guess = "guessed-token-5d7c1e"
    good_hex = rx.hub_signature(rx.CHATSHIPPER_SECRETS[0], cs).removeprefix("sha1=")
    forged = rx.hub_signature("not-the-secret-8e2f", cs)
    signed = rx.standard_headers(rx.STANDARD_SECRETS[0], std)
    stale = rx.standard_headers(rx.STANDARD_SECRETS[0], std, timestamp=int(time.time()) - 3600)
    foreign = rx.standard_headers("whsec_" + "QUJD" * 8, std)
    return [
        ("natterly token missing", "acme", nat, json, "missing_token", "auth_token", []),
        ("natterly token wrong", "acme", rx.with_natterly_token(nat, guess), json,
         "no_matching_secret", "auth_token", [guess]),
        ("natterly token not a string", "acme", nat[:-1] + b', "auth_token": 12345}', json,
         "malformed_token", "auth_token", []),
        ("chatshipper header missing", "shop", cs, json, "missing_header", "X-Hub-Signature", []),
        ("chatshipper not sha1=", "shop", cs, json | {"X-Hub-Signature": f"sha256={good_hex}"},
         "wrong_scheme", "X-Hub-Signature", [good_hex]),
        ("chatshipper no matching secret", "shop", cs, json | {"X-Hub-Signature": forged},
         "no_matching_secret", "X-Hub-Signature", [forged.removeprefix("sha1=")]),
        ("standard headers missing", "std", std, json, "missing_header", "webhook-id", []),
        ("standard signature missing", "std", std,
         json | {k: v for k, v in signed.items() if k != "webhook-signature"}, "missing_header",
         "webhook-signature", []),
        ("standard timestamp outside tolerance", "std", std, json | stale,
         "timestamp_outside_tolerance", "webhook-timestamp",
         [stale["webhook-signature"].removeprefix("v1,")]),
        ("standard no matching signature", "std", std, json | foreign, "no_matching_secret",
         "webhook-signature", [foreign["webhook-signature"].removeprefix("v1,")]),
    ]


async def test_authentication_failures_answer_alike_and_log_which_check_failed(
        rx: ModuleType, receiver: TestClient, credentials: object,  # type: ignore[type-arg]
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()  # no redaction: the code itself must not log secrets
    answers: set[bytes] = set()
    logged: list[str] = []
    presented_all: list[str] = []
    for name, source, body, headers, reason, field, presented in _auth_failures(rx):
        caplog.clear()
        resp = await receiver.post(f"/webhooks/{source}", data=body, headers=headers)
        assert resp.status == 401, (name, await resp.text())
        answers.add(await resp.read())
        [record] = [r for r in caplog.records if r.getMessage() == "rejected"]
        assert (record.levelname, record.source, record.reason, record.field) == (  # type: ignore[attr-defined]
            "WARNING", source, reason, field), name
        if reason == "timestamp_outside_tolerance":
            assert 3590 <= record.skew_s <= 3700, record.skew_s  # type: ignore[attr-defined]
        logged.extend(formatter.format(r) for r in caplog.records)
        presented_all.extend(presented)
    # One answer for every cause: the sender learns nothing about which check failed.
    assert answers == {b'{"error":"unauthorized","detail":"authentication failed"}'}
    text = "\n".join(logged)
    secrets: tuple[str, ...] = credentials.all()  # type: ignore[attr-defined]
    for value in (*secrets, *presented_all):
        assert value not in text, "a secret or a presented credential reached the log"


async def test_unknown_source_names_the_configured_ones_without_echoing_the_path(
        rx: ModuleType, receiver: TestClient, make_receiver: Callable[..., Awaitable[TestClient]],  # type: ignore[type-arg]
        kafka_settings: KafkaSettings) -> None:
    for method in (receiver.post, receiver.get):
        resp = await method("/webhooks/acme-typo-41c", data=b"{}", headers=rx.JSON)
        answer = await resp.json()
        assert resp.status == 404 and answer["error"] == "unknown_source"
        assert answer["detail"] == ("no source by that name is configured; configured: acme, "
                                    "shop, std")
    bare = await make_receiver(Settings(kafka=kafka_settings))
    resp = await bare.post("/webhooks/acme", data=b"{}", headers=rx.JSON)
    assert resp.status == 404
    assert (await resp.json())["detail"].startswith("no sources are configured")
