"""``POST /webhooks/{source}`` and the ChatShipper ``GET`` handshake.

Request flow, each step answering with its own error before the next one runs:

1. look up the source (404 ``unknown_source``);
2. require a JSON media type (415 ``unsupported_media_type``);
3. read the body, stopping as soon as it passes the limit (413 ``body_too_large``);
4. authenticate (401 ``unauthorized``, one generic detail for every cause; the log line
   says which check failed, see :class:`~receiver.signatures.AuthFailure`);
5. parse with the contracts (400 ``invalid_body``, detail names the JSON path);
6. append the envelope to Kafka and wait for acks=all (503 ``kafka_unavailable``
   with Retry-After);
7. answer 200 ``{"event_id", "position"}``.

A request rejected at any step has written nothing. Bodies and headers are never logged
(Natterly bodies carry the account token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from contracts.envelope import Envelope, encode_envelope
from contracts.errors import ContractError
from contracts.ingest import natterly_auth_token, parse_webhook
from contracts.topics import Topics
from parley.http import error_response, json_response
from receiver.errors import (
    BodyTooLarge,
    InvalidBody,
    KafkaUnavailable,
    ReceiverError,
    Unauthorized,
    UnknownSource,
    UnsupportedMediaType,
)
from receiver.metrics import NO_EVENT, UNKNOWN_SOURCE, ReceiverMetrics
from receiver.publisher import Publisher
from receiver.signatures import AuthFailure, BodyToken, HubSignature, StandardWebhooks
from receiver.sources import Source

__all__ = ["WebhookAccepted", "WebhookHandler"]

log = logging.getLogger("parley.receiver")

# The longest ChatShipper handshake challenge echoed back (they are short random strings).
MAX_CHALLENGE_CHARS = 256


class WebhookAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook that Kafka acknowledged on every in-sync replica.

    ``position`` (``topic:partition:offset``) can be passed to any query as ``min_position``.
    """

    event_id: str
    position: str


class WebhookHandler:
    def __init__(self, sources: Mapping[str, Source], publisher: Publisher, topics: Topics,
                 metrics: ReceiverMetrics, *, max_body_bytes: int) -> None:
        self._sources = dict(sources)
        self._publisher = publisher
        self._topics = topics
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    # ------------------------------------------------------------------ POST
    async def post(self, request: web.Request) -> web.Response:
        name = request.match_info["source"]
        source = self._sources.get(name)
        label = source.name if source else UNKNOWN_SOURCE
        event_type = NO_EVENT
        event_id: str | None = None
        metrics = self._metrics
        metrics.in_flight_now += 1
        try:
            if source is None:
                raise UnknownSource(self._sources)
            _check_media_type(request)
            body = await self._read_body(request)
            env = self._authenticate_and_parse(source, request, body)
            event_type, event_id = env.event_type, env.event_id
            position = await self._publisher.publish(
                self._topics.for_aggregate(env.aggregate), env.record_key, encode_envelope(env))
        except ReceiverError as exc:
            metrics.answered(label, event_type, exc.status)
            return self._reject(exc, label, event_type, event_id)
        finally:
            metrics.in_flight_now -= 1
        metrics.answered(label, event_type, 200)
        metrics.body_bytes.observe(len(body))
        # DEBUG, not INFO: Kafka itself is the record of every accepted event, and a log
        # write per request costs about a sixth of the receiver's CPU (docs/benchmarks.md).
        answer = WebhookAccepted(event_id=env.event_id, position=str(position))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("accepted", extra={"event_id": answer.event_id, "position": answer.position,
                                         "source": label, "event_type": event_type})
        return json_response(answer)

    def _reject(self, exc: ReceiverError, source: str, event_type: str,
                event_id: str | None) -> web.Response:
        headers = None
        level = logging.INFO
        extra: dict[str, object] = {"source": source, "status": exc.status, "error": exc.code,
                                    "detail": exc.detail, "event_type": event_type,
                                    "event_id": event_id}
        if isinstance(exc, KafkaUnavailable):
            headers = {"Retry-After": str(exc.retry_after_s)}
            level = logging.WARNING
        elif isinstance(exc, Unauthorized):
            # Which check failed, for the operator (the sender got the generic answer): the
            # failure names a header or field, never its value.
            level = logging.WARNING
            extra |= {"reason": exc.failure.reason, "field": exc.failure.field}
            if exc.failure.skew_s is not None:
                extra["skew_s"] = exc.failure.skew_s
        log.log(level, "rejected", extra=extra)
        return error_response(exc.status, exc.code, exc.detail, headers=headers)

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body, read in chunks and abandoned as soon as it passes the limit."""
        limit = self._max_body_bytes
        too_large = BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
        declared = request.content_length
        if declared is not None:
            if declared > limit:
                raise too_large
            # HTTP framing ends the body at Content-Length: reading that much is bounded.
            try:
                return await request.content.readexactly(declared)
            except asyncio.IncompleteReadError:
                raise InvalidBody("the body ended before its Content-Length") from None
        buf = bytearray()
        async for chunk in request.content.iter_any():
            buf += chunk
            if len(buf) > limit:
                # A chunked body has no declared length: count as it arrives. aiohttp
                # closes the connection rather than reading the rest.
                raise too_large
        return bytes(buf)

    def _authenticate_and_parse(self, source: Source, request: web.Request,
                                body: bytes) -> Envelope:
        verifier = source.verifier
        webhook_id: str | None = None
        failure: AuthFailure | None
        match verifier:
            case BodyToken():
                # The token is inside the body, so the body must be a JSON object before
                # we can tell whether it is authentic; a syntax error names no content.
                try:
                    token = natterly_auth_token(body)
                except ContractError as exc:
                    if exc.path != "$.auth_token":
                        raise InvalidBody(str(exc)) from None
                    # A token that is not a string is no credential: 401.
                    failure = AuthFailure("malformed_token", BodyToken.FIELD)
                else:
                    failure = verifier.check(token)
            case HubSignature():
                failure = verifier.check(request.headers.get("X-Hub-Signature"), body)
            case StandardWebhooks():
                webhook_id = request.headers.get("webhook-id")
                failure = verifier.check(webhook_id, request.headers.get("webhook-timestamp"),
                                         request.headers.get("webhook-signature"), body,
                                         time.time())
        if failure is not None:
            raise Unauthorized(failure)
        try:
            return parse_webhook(source.provider, source.name, body,
                                 received_at=datetime.now(UTC), webhook_id=webhook_id)
        except ContractError as exc:
            raise InvalidBody(str(exc)) from None

    # ------------------------------------------------------------------ GET
    async def handshake(self, request: web.Request) -> web.Response:
        """ChatShipper's subscription check: ``?type=subscribe&challenge=X`` answers ``X``."""
        source = self._sources.get(request.match_info["source"])
        if source is None:
            unknown = UnknownSource(self._sources)
            return error_response(unknown.status, unknown.code, unknown.detail)
        if source.provider != "chatshipper":
            return error_response(405, "method_not_allowed", "this source only accepts POST",
                                  headers={"Allow": "POST"})
        challenge = request.query.get("challenge")
        if request.query.get("type") != "subscribe" or not challenge:
            return error_response(403, "forbidden", "expected ?type=subscribe&challenge=…")
        if len(challenge) > MAX_CHALLENGE_CHARS:
            return error_response(400, "invalid_challenge", "the challenge is too long")
        log.info("subscription handshake answered", extra={"source": source.name})
        # text/plain + nosniff: an echoed value must never be rendered as markup.
        return web.Response(text=challenge, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})


def _check_media_type(request: web.Request) -> None:
    if request.headers.get("Content-Type") == "application/json":
        return  # what providers send; parsing the header would find the same
    mime = request.content_type  # lower-cased, without parameters
    if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
        raise UnsupportedMediaType("Content-Type must be application/json")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON bodies must be UTF-8")
