"""The OpenAPI 3.1 description of Parley's HTTP API.

    python -m parley.openapi --write docs/openapi.json

Routes, parameters and answers are written down here; the JSON shapes are generated from the
msgspec Structs the handlers encode (``contracts.state``, ``parley.http.ErrorBody``, …), so a
shape cannot differ from what is sent. ``tests/parley/test_openapi.py`` fails when the
routes or query parameters of a real ``parley run`` app differ from this document, and
validates real answers against it.

The document names no configured source and holds no secret: ``GET /api/openapi.json``
serves it without a bearer token, limited to the routes of the process that serves it.
Importing this module does no I/O.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from consumers.search.queries import MAX_LIMIT as MAX_SEARCH_LIMIT
from consumers.search.queries import SearchPage
from consumers.service import ConsumersAnswer
from contracts.schemas import clean_descriptions
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from parley.http import ErrorBody, Health, NotReady, Ready, error_response, is_console
from projector.api import (
    CHAT_STATUSES,
    CHAT_TYPES,
    DEFAULT_CHATS_LIMIT,
    DEFAULT_MESSAGES_LIMIT,
    ApiOptions,
    Page,
)
from projector.erasure_api import ErasureAccepted
from projector.reports import AgentsReport, ChatsReport, LiveReport
from projector.subject_export import SubjectExport
from receiver.handlers import MAX_CHALLENGE_CHARS, WebhookAccepted

__all__ = ["OPENAPI_PATH", "SHAPES", "document", "install_openapi", "known_query_parameters",
           "main", "render", "served_routes"]

OPENAPI_PATH = "/api/openapi.json"
Json = dict[str, Any]

#: Each answer's name here → the Struct its handler encodes.
SHAPES: dict[str, object] = {
    "accepted": WebhookAccepted, "chat": ChatState, "chats": Page[ChatState],
    "messages": Page[MessageState], "visitor": VisitorState, "agents": Page[AgentState],
    "agent": AgentState,
    "search": SearchPage, "consumers": ConsumersAnswer, "error": ErrorBody,
    "health": Health, "ready": Ready, "not_ready": NotReady,
    "report_chats": ChatsReport, "report_agents": AgentsReport, "report_live": LiveReport,
    "erasure": ErasureAccepted, "export": SubjectExport,
}

_BEARER = """One of `http.api_tokens`, as `Authorization: Bearer <token>`. With tokens
configured, every route needs one except `/healthz`, `/readyz`, `/api/openapi.json`, the
webhooks (authenticated per source, never by this token) and, with
`http.metrics_public = true`, `/metrics`. Without tokens configured, nothing needs one."""

_WEBHOOK_AUTH = """Authenticated by the source's provider; a bearer token is never accepted
instead. `natterly`: the body's top-level `auth_token` is one of the source's `auth_tokens`
(the member is stripped before the body is stored). `chatshipper`: `X-Hub-Signature:
sha1=<hex HMAC-SHA1(secret, raw body)>` with one of its `secrets`. `standard` (Standard
Webhooks): `webhook-id`, `webhook-timestamp` within `tolerance_s` of now, and
`webhook-signature` = `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` or
`v1a,<base64 Ed25519 signature of the same>` (a `whpk_` public key), up to 8 of them; or the
same three as Svix names them (`svix-id`, `svix-timestamp`, `svix-signature`).
The answer is 200 only once Kafka acknowledged the record on every in-sync replica;
a rejected request writes nothing."""


def _param(name: str, where: str, schema: Json, description: str,
           required: bool = False) -> Json:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


def _query(name: str, description: str, schema: Json | None = None,
           required: bool = False) -> Json:
    return _param(name, "query", schema or {"type": "string"}, description, required)


def _limit(maximum: int, default: int) -> Json:
    return _query("limit", "How many items per page.",
                  {"type": "integer", "minimum": 1, "maximum": maximum, "default": default})


_RANGE = [
    _query("from", "First UTC day (YYYY-MM-DD), included; default: 29 days before `to`.",
           {"type": "string", "format": "date"}),
    _query("to", "Last UTC day (YYYY-MM-DD), included; default: today.",
           {"type": "string", "format": "date"}),
]
_ID = _param("id", "path", {"type": "string"}, "The chat's or visitor's id.", required=True)
_AGENT_ID = _param("id", "path", {"type": "string"}, "The agent's id.", required=True)
_SOURCE = _param("source", "path", {"type": "string"},
                 "A configured source's name (`[sources.NAME]`).", required=True)
_CURSOR = _query("cursor", "The previous page's `next_cursor`.")
_MIN_POSITION = _query(
    "min_position", "Read your writes: wait (bounded) until the projection applied this "
    "position, the `position` of a webhook's 200 answer; 504 when the wait runs out.",
    {"type": "string", "pattern": "^[^:]+:[0-9]+:[0-9]+$"})
_AFTER = _query("after", "Resume after this event id, a vector of state-topic positions (used "
                "when no `Last-Event-ID` is sent); a webhook's event-topic position is 400 here.")
_CHAT_AFTER = _query(
    "after", "Resume after this event id (used when no `Last-Event-ID` is sent), or start "
    "from a webhook: the `position` of a webhook's 2xx (`<prefix>.events.chat:P:O`) starts the "
    "stream with the change that webhook caused, waiting for it if it is not published yet.")
_LAST_EVENT_ID = _param("Last-Event-ID", "header", {"type": "string"},
                        "Resume after this event id (browsers' `EventSource` send it when "
                        "they reconnect).")
_STREAMS = """Only committed states are sent (read from the state topics the projector
publishes to after each commit); a state may come twice with the same `version`. Resuming after
an id sends every later change once, in log order per partition. An idle stream carries a
`: heartbeat` comment every 15 s; a client that takes no event for 10 s while more wait is cut
off with a final `event: cutoff`. See docs/http-api.md, "Live subscriptions"."""
_SIGNATURE_HEADERS = [
    _param(name, "header", {"type": "string"}, text) for name, text in (
        ("X-Hub-Signature", "`chatshipper` sources: `sha1=<hex HMAC-SHA1>` of the raw body."),
        ("webhook-id", "`standard` sources: the message id (also the event id)."),
        ("webhook-timestamp", "`standard` sources: Unix seconds when it was signed."),
        ("webhook-signature", "`standard` sources: space-separated `v1,<base64>` (HMAC) or "
         "`v1a,<base64>` (Ed25519) signatures, at most 8."),
        ("svix-id", "`standard` sources, as Svix sends it: `webhook-id` (read only when no "
         "`webhook-*` header is present)."),
        ("svix-timestamp", "`standard` sources, as Svix sends it: `webhook-timestamp`."),
        ("svix-signature", "`standard` sources, as Svix sends it: `webhook-signature`."))]

_CONTENT_ENCODING = _param("Content-Encoding", "header", {"enum": ["identity"]},
                           "Bodies are sent uncompressed: any other coding is 415.")


def _content(schema: Json, media: str = "application/json") -> Json:
    return {media: {"schema": schema}}


def _answer(description: str, schema: Json, media: str = "application/json",
            headers: dict[str, str] | None = None) -> Json:
    answer: Json = {"description": description, "content": _content(schema, media)}
    if headers:
        answer["headers"] = {name: {"description": text, "required": True,
                                    "schema": {"type": "string"}}
                             for name, text in headers.items()}
    return answer


def _paths(ref: dict[str, Json]) -> Json:
    def error(codes: str, description: str, headers: dict[str, str] | None = None) -> Json:
        schema = {"$ref": ref["error"]["$ref"], "properties": {"error": {"enum": codes.split()}}}
        return _answer(description, schema, headers=headers)

    def op(summary: str, tag: str, params: list[Json], responses: Json, *,
           public: bool = False, **extra: Any) -> Json:
        operation: Json = {"tags": [tag], "summary": summary, **extra}
        if params:
            operation["parameters"] = params
        if public:
            operation["security"] = []  # overrides the document's bearer requirement
        else:
            responses["401"] = error("unauthorized", "A bearer token is needed (see the "
                                     "`bearer` scheme) and was missing or not valid.",
                                     {"WWW-Authenticate": 'Bearer realm="parley", plus '
                                      'error="invalid_token" for a wrong token.'})
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def query_api(summary: str, params: list[Json], shape: str, not_found: bool = False
                  ) -> Json:
        responses = {
            "200": _answer(summary, ref[shape], headers={
                "X-Parley-Projection": "The projection copy that answered."}),
            "400": error("bad_request", "A parameter is malformed, or `min_position` names a "
                         "partition its topic does not have; `detail` names it."),
            "503": error("unavailable overloaded", "No projection yet, reads switching to a "
                         "rebuilt one, the store busy, or (`overloaded`) too many requests "
                         "waiting for a `min_position` or for a store connection.",
                         {"Retry-After": "Seconds to wait."}),
            "504": error("timeout", "`min_position` was not applied in time; retry later."),
        }
        if not_found:
            responses["404"] = error("not_found", "No such chat or visitor.")
        return {"get": op(summary, "query", [*params, _MIN_POSITION], responses)}

    def stream(summary: str, params: list[Json]) -> Json:
        return {"get": op(summary, "query", params, {
            "200": _answer(summary, {
                "type": "string", "description": "`text/event-stream`: events whose `data` is "
                "a state topic's record (kind, id, version, positions, state), `: heartbeat` "
                "comments, and a final `event: cutoff` or `event: error` (JSON data with "
                "`last_event_id`) when Parley ends the stream."}, "text/event-stream"),
            "400": error("bad_request", "A parameter or `Last-Event-ID` is malformed, of "
                         "another topic or partition (a webhook's: of another chat's), or past "
                         "the end of the log."),
            "410": error("gone", "The log no longer has the position to resume after."),
            "503": error("unavailable overloaded", "The state topics are unreachable, or "
                         "(`overloaded`) the process has its maximum of streams open.",
                         {"Retry-After": "Seconds to wait."}),
        }, description=_STREAMS)}

    api = ApiOptions()
    unknown_source = error("unknown_source", "No such source is configured.")
    return {
        "/webhooks/{source}": {
            "post": op("Append a provider's webhook to the log.", "webhooks",
                       [_SOURCE, *_SIGNATURE_HEADERS, _CONTENT_ENCODING], {
                           "200": _answer("Durable in Kafka.", ref["accepted"]),
                           "400": error("invalid_body", "Malformed JSON, or JSON that does not "
                                        "fit the provider's contract (`detail` has the path)."),
                           "401": error("unauthorized", "Authentication failed."),
                           "404": unknown_source,
                           "408": error("body_timeout", "The body did not arrive within "
                                        "`http.body_timeout_s`; the connection is closed."),
                           "413": error("body_too_large", "The body is over "
                                        "`http.max_body_bytes`."),
                           "415": error("unsupported_media_type",
                                        "Not `application/json` (or `+json`) in UTF-8, or "
                                        "compressed (`Content-Encoding`)."),
                           "503": error("kafka_unavailable overloaded key_store_unavailable",
                                        "Kafka did not acknowledge in time, too many bodies or "
                                        "connections are in flight (`http.max_buffered_body_bytes`, "
                                        "`http.max_connections`), or the key store did not "
                                        "answer (docs/privacy.md); retry.",
                                        {"Retry-After": "Seconds to wait."}),
                       }, public=True, description=_WEBHOOK_AUTH, requestBody={
                           "required": True, "content": _content({
                               "type": "object", "description": "The provider's body, stored "
                               "unchanged; its schemas are in `docs/schemas/`."})}),
            "get": op("ChatShipper's subscription handshake: echo the challenge.", "webhooks", [
                _SOURCE,
                _query("type", "Always `subscribe`.", {"enum": ["subscribe"]}, required=True),
                _query("challenge", "Echoed back as the answer.",
                       {"type": "string", "minLength": 1, "maxLength": MAX_CHALLENGE_CHARS},
                       required=True)], {
                "200": _answer("The challenge, as text.", {"type": "string"}, "text/plain"),
                "400": error("invalid_challenge", "The challenge is too long."),
                "403": error("forbidden", "Not `?type=subscribe&challenge=…`."),
                "404": unknown_source,
                "405": error("method_not_allowed", "The source's provider is not ChatShipper.",
                             {"Allow": "`POST`."}),
            }, public=True),
        },
        "/api/chats": query_api("Chats, most recent activity first.", [
            _query("status", "Only chats in this status.", {"enum": sorted(CHAT_STATUSES)}),
            _query("source", "Only chats of this source."),
            _query("agent", "Only chats of this agent id."),
            _query("type", "Conversation type: `contact` (the default: customers' chats, and "
                           "chats of no known type such as Natterly's), `bot`, `agent`, "
                           "`system`, or `all` (every chat, of any type).",
                   {"enum": sorted(CHAT_TYPES)}),
            _limit(api.max_chats_limit, DEFAULT_CHATS_LIMIT), _CURSOR], "chats"),
        "/api/chats/{id}": query_api("One chat.", [_ID], "chat", not_found=True),
        "/api/chats/{id}/messages": query_api(
            "A chat's messages by posted time.",
            [_ID, _limit(api.max_messages_limit, DEFAULT_MESSAGES_LIMIT), _CURSOR],
            "messages", not_found=True),
        "/api/visitors/{id}": {**query_api(
            "One visitor. A visitor first known only by a ChatBox session (`session:<id>`) and "
            "later named by its uuid is one visitor: the uuid's answer includes the session's "
            "chats and pages (`sessions` lists them); the session's answer says `identified_as`.",
            [_ID], "visitor", not_found=True), "delete": op(
            "Forget the visitor (an erasure request): destroy their data keys, then publish "
            "the forget that erases them from every projection, the search index, the CRM and "
            "every consumer group (docs/privacy.md).", "privacy", [_ID], {
                "202": _answer("The forget is published; the live projection erases it "
                               "moments later (the visitor's `erasure` then names it; "
                               "`parley visitors forget-status` shows every group).",
                               ref["erasure"]),
                "404": error("not_found", "No such visitor; nothing changed."),
                "503": error("unavailable key_store_unavailable", "The state store is busy, "
                             "or the key store cannot be reached (nothing changed).",
                             {"Retry-After": "Seconds to wait."})})},
        "/api/visitors/{id}/export": {"get": op(
            "Everything held about the visitor (an access request): the visitor, its session "
            "visitors, its chats with their messages, the pages it viewed.", "privacy", [_ID], {
                "200": _answer("The export, decrypted.", ref["export"]),
                "404": error("not_found", "No such visitor."),
                "503": error("unavailable", "The state store is busy.",
                             {"Retry-After": "Seconds to wait."})})},
        "/api/agents": query_api("Every agent, by id (one page).", [], "agents"),
        "/api/agents/{id}": query_api("One agent, with its measures over its whole history.",
                                      [_AGENT_ID], "agent", not_found=True),
        "/api/chats/{id}/stream": stream(
            "One chat's committed state changes, and its messages', as Server-Sent Events "
            "(`event: chat` or `event: message`; `id:` the record's position on the chat "
            "state topic).", [_ID, _CHAT_AFTER, _LAST_EVENT_ID]),
        "/api/stream": stream(
            "Every committed state change of one kind, as Server-Sent Events (`event:` the "
            "kind; `id:` a vector: one `topic:partition:offset` per partition passed, "
            "comma-separated).", [
                _query("kind", "Which state topic: `chat` (the default; chats without their "
                       "messages), `visitor` or `agent`.", {"enum": ["agent", "chat", "visitor"]}),
                _query("status", "Only states in this status (chats: a chat status; agents: "
                       "`online`, `offline`, `invisible`)."),
                _query("source", "Only chats of this source (`kind=chat` only)."),
                _AFTER, _LAST_EVENT_ID]),
        "/api/search": {"get": op("Chats ranked by a full-text match.", "search", [
            _query("q", "Words that must all match, the last as a prefix of at least two "
                   "characters.", required=True),
            _query("source", "Only chats of this source."),
            _query("agent", "Only chats of this agent (id or name)."),
            _query("status", "Only chats in this status."),
            _query("from", "Last activity at or after this ISO-8601 time.",
                   {"type": "string", "format": "date-time"}),
            _query("to", "Last activity before this ISO-8601 time.",
                   {"type": "string", "format": "date-time"}),
            _limit(MAX_SEARCH_LIMIT, 20), _CURSOR], {
                "200": _answer("Hits, best first.", ref["search"]),
                "400": error("bad_request", "`q` missing or its last word one letter, or a "
                             "parameter malformed."),
            })},
        "/api/consumers": {"get": op("Every consumer group here: state and lag.", "operations",
                                     [], {
            "200": _answer("The groups.", ref["consumers"]),
            "503": error("kafka_unavailable", "Lag could not be measured yet.",
                         {"Retry-After": "Seconds to wait."}),
        })},
        OPENAPI_PATH: {"get": op("This document.", "operations", [], {
            "200": _answer("OpenAPI 3.1.", {"type": "object"})}, public=True)},
        "/healthz": {"get": op("Liveness.", "operations", [], {
            "200": _answer("Alive.", ref["health"])}, public=True)},
        "/readyz": {"get": op("Readiness of every role's checks.", "operations", [], {
            "200": _answer("Ready.", ref["ready"]),
            "503": _answer("Not ready.", ref["not_ready"])}, public=True)},
        "/metrics": {"get": op("Prometheus metrics.", "operations", [], {
            "200": _answer("The text exposition format.", {"type": "string"}, "text/plain")},
            description="Needs no token with `http.metrics_public = true`.")},
        "/api/reports/chats": query_api(
            "Counts, and the count, mean, median and p90 of each measure, of the chats that "
            "started in a range of UTC days, read from roll-ups (docs/analytics.md).",
            [*_RANGE, _query("group_by", "Group by agent, department, site, source, day, or "
                             "hour of the day (UTC); one group `all` without.",
                             {"enum": ["agent", "department", "site", "source", "day", "hour"]})],
            "report_chats"),
        "/api/reports/agents": query_api(
            "Every agent with the chats it held that started in the range, and its measures.",
            _RANGE, "report_agents"),
        "/api/reports/live": query_api(
            "Chats waiting now, the longest current wait, and the agents online or with open "
            "chats.", [], "report_live"),
    }


def document(routes: Collection[tuple[str, str]] | None = None) -> Json:
    """The OpenAPI document as JSON data. With ``routes`` (``(path, method)`` pairs, method in
    lower case; see :func:`served_routes`), only the operations among them."""
    refs, schemas = msgspec.json.schema_components(
        list(SHAPES.values()), ref_template="#/components/schemas/{name}")
    paths = _paths(dict(zip(SHAPES, refs, strict=True)))
    if routes is not None:
        paths = {path: kept for path, operations in paths.items()
                 if (kept := {m: o for m, o in operations.items() if (path, m) in routes})}
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Parley", "version": importlib.metadata.version("parley"),
                 "summary": "Live-chat webhooks in, conversation state out.",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": _BEARER}}},
    }
    cleaned = clean_descriptions(doc)
    assert isinstance(cleaned, dict)
    return cleaned


def render() -> bytes:
    """The whole document as indented JSON text (what ``docs/openapi.json`` holds)."""
    return msgspec.json.format(msgspec.json.encode(document()), indent=2) + b"\n"


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    """``(path, method)`` of every route of ``app``, method in lower case; leaves out HEAD,
    which aiohttp adds beside every GET, and the console's pages (HTML for people, no API)."""
    return {(route.resource.canonical, route.method.lower()) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
            and not is_console(route.resource.canonical)}


def install_openapi(app: web.Application) -> None:
    """Serve ``GET /api/openapi.json``: the document, limited to the routes ``app`` serves."""
    body: bytes | None = None

    async def openapi_json(request: web.Request) -> web.Response:
        nonlocal body
        if body is None:  # built on first use: by then every route is in place
            body = msgspec.json.encode(document(served_routes(request.app)))
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.middlewares.append(known_query_parameters(document()))  # inside the token check


def known_query_parameters(doc: Json) -> Middleware:
    """A middleware answering 400 ``bad_request`` to an ``/api/`` request with a query
    parameter its operation in ``doc`` does not take, naming it and the ones it does: a typo
    (``?stauts=closed``) is never silently an unfiltered answer."""
    taken = {(method.upper(), path): frozenset(p["name"] for p in op.get("parameters", ())
                                               if p["in"] == "query")
             for path, item in doc["paths"].items() for method, op in item.items()}

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if request.query and resource is not None and request.path.startswith("/api/"):
            method = "GET" if request.method == "HEAD" else request.method
            allowed = taken.get((method, resource.canonical))
            unknown = sorted(set(request.query) - allowed) if allowed is not None else []
            if unknown:
                return error_response(
                    400, "bad_request", f"unknown query parameter {unknown[0][:40]!r}: this "
                    f"operation takes {', '.join(sorted(allowed or ())) or 'none'}")
        return await handler(request)

    return check


def main(argv: Sequence[str] | None = None) -> int:
    """Write the document to ``--write FILE`` (only if it changed)."""
    parser = argparse.ArgumentParser(prog="python -m parley.openapi",
                                     description="Write Parley's OpenAPI 3.1 document.")
    parser.add_argument("--write", metavar="FILE", required=True, type=Path)
    path: Path = parser.parse_args(argv).write
    content = render()
    if not path.exists() or path.read_bytes() != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
