"""``POST /webhooks/{source}`` and the ChatShipper ``GET`` handshake.

Request flow, each step answering with its own error before the next one runs:

1. look up the source (404 ``unknown_source``);
2. require a JSON media type (415 ``unsupported_media_type``);
3. take the body's share of the buffered-bytes budget (503 ``overloaded`` with
   Retry-After, before anything is read), then read the body, stopping as soon as it passes
   the limit (413 ``body_too_large``, with ``Connection: close``) or its deadline (408
   ``body_timeout``, and the connection is closed);
4. authenticate (401 ``unauthorized``, one generic detail for every cause; the log line
   says which check failed, see :class:`~receiver.signatures.AuthFailure`);
5. parse with the contracts (400 ``invalid_body``, detail names the JSON path), then seal
   the body's personal parts with its subject's data key (503 ``key_store_unavailable``
   with Retry-After when the key store cannot be reached; docs/privacy.md);
6. append the envelope to Kafka and wait for acks=all (503 ``kafka_unavailable``
   with Retry-After);
7. answer 200 ``{"event_id", "position"}``.

A request rejected at any step has written nothing to the event log; a 4xx is noted for the
rejections topic (receiver/rejections.py: bounded, never waited for, never a header or a
credential). Bodies and headers are never logged (Natterly bodies carry the account token).
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
from parley.privacy import MasterKeyError, PrivacyError
from parley.privacy.ring import KeyRing
from parley.settings import HttpSettings
from receiver.budget import BodyBudget
from receiver.errors import (
    BodyTimeout,
    BodyTooLarge,
    InvalidBody,
    KeyStoreUnavailable,
    Overloaded,
    ReceiverError,
    Unauthorized,
    UnknownSource,
    UnsupportedMediaType,
)
from receiver.metrics import NO_EVENT, UNKNOWN_SOURCE, ReceiverMetrics
from receiver.publisher import Publisher
from receiver.rejections import RejectionRecorder
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
    """The webhook routes of one receiver; ``http`` supplies the body limits (size, read
    deadline, the buffered-bytes budget) and the Retry-After of a 503; ``rejections``, if
    given, is told of every 4xx once it is decided (it never delays the answer)."""

    def __init__(self, sources: Mapping[str, Source], publisher: Publisher, topics: Topics,
                 metrics: ReceiverMetrics, http: HttpSettings, ring: KeyRing | None = None,
                 rejections: RejectionRecorder | None = None) -> None:
        self._sources = dict(sources)
        self._ring = ring  # None: bodies are stored readable (privacy.encrypt = false)
        self._rejections = rejections
        self._publisher = publisher
        self._topics = topics
        self._metrics = metrics
        self._http = http
        self.budget = BodyBudget(http.max_buffered_body_bytes)
        metrics.buffered_body_bytes.set_function(lambda: self.budget.in_use_bytes)

    # ------------------------------------------------------------------ POST
    async def post(self, request: web.Request) -> web.Response:
        name = request.match_info["source"]
        source = self._sources.get(name)
        label = source.name if source else UNKNOWN_SOURCE
        event_type = NO_EVENT
        event_id: str | None = None
        metrics = self._metrics
        metrics.in_flight_now += 1
        held = [0]  # body bytes this request took from the budget
        try:
            if source is None:
                raise UnknownSource(self._sources)
            _check_media_type(request)
            body = await self._read_body(request, held)
            env = self._authenticate_and_parse(source, request, body)
            if self._ring is not None:
                env = await self._seal(env)
            event_type, event_id = env.event_type, env.event_id
            position = await self._publisher.publish(
                self._topics.for_aggregate(env.aggregate), env.record_key, encode_envelope(env))
        except ReceiverError as exc:
            metrics.answered(label, event_type, exc.status)
            if self._rejections is not None:
                self._rejections.note(
                    label, exc, provider=source.provider if source else None, requested=name,
                    body=exc.authenticated_body if isinstance(exc, InvalidBody) else None)
            return await self._reject(request, exc, label, event_type, event_id)
        finally:
            metrics.in_flight_now -= 1
            self.budget.give_back(held[0])
        metrics.answered(label, event_type, 200)
        metrics.body_bytes.observe(len(body))
        # DEBUG, not INFO: Kafka itself is the record of every accepted event, and a log
        # write per request costs about a sixth of the receiver's CPU (docs/benchmarks.md).
        answer = WebhookAccepted(event_id=env.event_id, position=str(position))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("accepted", extra={"event_id": answer.event_id, "position": answer.position,
                                         "source": label, "event_type": event_type})
        return json_response(answer)

    async def _seal(self, env: Envelope) -> Envelope:
        """``env`` with its personal parts sealed under its subject's key (docs/privacy.md);
        503 when the key store cannot be reached: never stored unencrypted instead."""
        assert self._ring is not None
        try:
            return await self._ring.seal(env)
        except MasterKeyError as exc:
            # The subject's key is wrapped by a master key this process lacks (a rotation
            # whose rewrap ran before this process got the new key): the operator adds it
            # (the line says which); meanwhile the sender retries and nothing is written.
            log.error("cannot seal: %s", exc)
            raise KeyStoreUnavailable(self._http.retry_after_s,
                                      "the subject's key cannot be opened; retry later") from None
        except PrivacyError as exc:
            if not exc.retriable:
                raise
            # The cause for the operator (a path or host, never a key); the sender gets 503.
            log.warning("the key store failed: %s", exc)
            raise KeyStoreUnavailable(self._http.retry_after_s) from None

    async def _reject(self, request: web.Request, exc: ReceiverError, source: str,
                      event_type: str, event_id: str | None) -> web.Response:
        headers = None
        level = logging.INFO
        extra: dict[str, object] = {"source": source, "status": exc.status, "error": exc.code,
                                    "detail": exc.detail, "event_type": event_type,
                                    "event_id": event_id}
        if exc.retry_after_s is not None:
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
        response = error_response(exc.status, exc.code, exc.detail, headers=headers)
        if isinstance(exc, BodyTooLarge):
            # The rest of the body is never read: say so (Connection: close); the server
            # closes once it has drained, or after parley.limits.LINGER_S.
            response.force_close()
        if isinstance(exc, BodyTimeout):
            # Cut the slow sender off now: aiohttp would otherwise keep reading (and
            # discarding) the rest of its body for up to ten more seconds.
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            if request.transport is not None:
                request.transport.close()
        return response

    async def _read_body(self, request: web.Request, held: list[int]) -> bytes:
        """The whole body, read in chunks within ``http.body_timeout_s`` and abandoned as
        soon as it passes the size limit. ``held[0]`` counts the budget bytes taken."""
        http = self._http
        limit = http.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
        try:
            if declared is not None and request.content.is_eof():
                # The whole body came with the headers (a webhook usually does): reading it
                # cannot wait, so no deadline timer to arm and cancel.
                return await self._read_within_budget(request, declared, held)
            async with asyncio.timeout(http.body_timeout_s):
                return await self._read_within_budget(request, declared, held)
        except TimeoutError:
            raise BodyTimeout(f"the body did not arrive within {http.body_timeout_s:g} s"
                              ) from None
        except ConnectionError:  # the sender hung up mid-body: one log line, no traceback
            raise InvalidBody("the connection closed before the body ended") from None

    async def _read_within_budget(self, request: web.Request, declared: int | None,
                                  held: list[int]) -> bytes:
        limit, budget = self._http.max_body_bytes, self.budget
        overloaded = Overloaded("too many webhook bodies are being received; retry later",
                                self._http.retry_after_s)
        if declared is not None:
            # Taken whole before the first byte is read: what this request may buffer.
            if not budget.take(0, declared):
                raise overloaded
            held[0] = declared
            # HTTP framing ends the body at Content-Length: reading that much is bounded.
            try:
                return await request.content.readexactly(declared)
            except asyncio.IncompleteReadError:
                raise InvalidBody("the body ended before its Content-Length") from None
        buf = bytearray()
        async for chunk in request.content.iter_any():
            # A chunked body has no declared length: count (and budget) as it arrives.
            if len(buf) + len(chunk) > limit:
                raise BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
            if not budget.take(len(buf), len(chunk)):
                raise overloaded
            held[0] += len(chunk)
            buf += chunk
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
                family, webhook_id, timestamp, signatures = _standard_headers(request)
                failure = verifier.check(webhook_id, timestamp, signatures, body, time.time(),
                                         family=family)
        if failure is not None:
            raise Unauthorized(failure)
        try:
            return parse_webhook(source.provider, source.name, body,
                                 received_at=datetime.now(UTC), webhook_id=webhook_id)
        except ContractError as exc:
            raise InvalidBody(str(exc), authenticated_body=body) from None

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


def _standard_headers(request: web.Request) -> tuple[str, str | None, str | None, str | None]:
    """``(family, id, timestamp, signatures)``: the same three as Svix names them
    (``svix-*``) if only those are present, else the ``webhook-*`` ones. Never a mix."""
    h = request.headers
    webhook = "webhook-id" in h or "webhook-timestamp" in h or "webhook-signature" in h
    if not webhook and ("svix-id" in h or "svix-timestamp" in h or "svix-signature" in h):
        return "svix-", h.get("svix-id"), h.get("svix-timestamp"), h.get("svix-signature")
    return "webhook-", h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")


def _check_media_type(request: web.Request) -> None:
    coding = request.headers.get("Content-Encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        # RFC 7694: 415 for a content coding not served, whichever (the server inflates
        # nothing: parley.http.build_app); which bytes a signature covers would be a guess.
        raise UnsupportedMediaType("Content-Encoding is not supported: send the body uncompressed")
    if request.headers.get("Content-Type") == "application/json":
        return  # what providers send; parsing the header would find the same
    mime = request.content_type  # lower-cased, without parameters
    if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
        raise UnsupportedMediaType("Content-Type must be application/json")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON bodies must be UTF-8")
