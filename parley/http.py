"""The HTTP process: health, readiness, metrics, and whatever the roles install."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hmac
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Literal

import msgspec
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley.errors import ListenError, SettingsError
from parley.limits import LINGER_S, CappedSockSite
from parley.loop import loop_name
from parley.readiness import ReadinessCache
from parley.runtime import Role, Runtime
from parley.settings import HttpSettings
from parley.startup import log_startup

log = logging.getLogger("parley.http")
RUNTIME = web.AppKey("runtime", Runtime)
READINESS = web.AppKey("readiness", ReadinessCache)
_JSON = msgspec.json.Encoder()


# The bodies this module answers with. parley.openapi generates their JSON Schemas from these
# same Structs, so the published description cannot drift from what is sent.
class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Why a request was turned away; ``error`` is a stable code, ``detail`` is for people."""

    error: str
    detail: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    """Every readiness check passed; ``checks`` names them."""

    status: Literal["ready"] = "ready"
    checks: list[str]


class NotReady(msgspec.Struct, frozen=True, kw_only=True):
    """Some readiness checks failed: ``problems`` maps each to one line saying why (with
    ``http.api_tokens`` set, only for a request with a valid bearer token; for others each
    line reads "not ready (the reason needs a bearer token)")."""

    status: Literal["not ready"] = "not ready"
    problems: dict[str, str]


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """``body`` (a Struct, or plain JSON data) as an ``application/json`` answer."""
    return web.Response(body=_JSON.encode(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, code: str, detail: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """Parley's one error shape, ``{"error": "<code>", "detail": "..."}`` (docs/architecture.md)."""
    return json_response(ErrorBody(error=code, detail=detail), status=status, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health())


#: What an unauthenticated ``/readyz`` says about a failing check, when tokens are set.
HIDDEN_REASON = "not ready (the reason needs a bearer token)"


async def readyz(request: web.Request) -> web.Response:
    """Ready or not, with the checks' names, for anyone (probes carry no credentials); why a
    check fails only with a valid bearer token when ``http.api_tokens`` are set (the reasons
    name brokers and stores). Results are cached (:mod:`parley.readiness`)."""
    results = await request.app[READINESS].results()
    problems = {name: problem for name, problem in results.items() if problem}
    if not problems:
        return json_response(Ready(checks=sorted(results)))
    tokens = request.app[RUNTIME].settings.http.api_tokens
    if tokens and bearer_status(request, [t.encode() for t in tokens]) != "valid":
        problems = dict.fromkeys(problems, HIDDEN_REASON)
    return json_response(NotReady(problems=problems), status=503)


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    body = generate_latest(rt.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# Routes that never need a bearer token: probes, the API description (it holds no data and
# no configuration), and webhooks (authenticated per source).
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/api/openapi.json"})
OPEN_PREFIXES = ("/webhooks/",)

#: The operator console's session cookie (:mod:`parley.console.session`): ``<nonce>.<token>``,
#: the token base64url-encoded. Console pages check it themselves (a browser cannot send a
#: bearer header), and it also opens the GET routes of :data:`COOKIE_ROUTES`.
CONSOLE_COOKIE = "parley_console"
#: Routes under it authenticate with :data:`CONSOLE_COOKIE`, not a bearer token.
CONSOLE_PREFIX = "/console"
#: GET routes the console's pages read with the browser's EventSource, which cannot send an
#: Authorization header: the console's cookie is accepted there in place of a bearer token.
COOKIE_ROUTES = frozenset({"/api/chats/{id}/stream", "/api/stream"})


def is_console(pattern: str) -> bool:
    """Whether a route pattern is one of the console's (under :data:`CONSOLE_PREFIX`)."""
    return pattern == CONSOLE_PREFIX or pattern.startswith(CONSOLE_PREFIX + "/")


def needs_token(pattern: str | None, *, metrics_public: bool = False) -> bool:
    """Whether a route (its canonical pattern; None: no route matched) is one that
    ``http.api_tokens`` guard: everything but :data:`OPEN_ROUTES`, :data:`OPEN_PREFIXES` and,
    if ``metrics_public``, ``/metrics``."""
    if pattern is None:
        return True
    return not (pattern in OPEN_ROUTES or pattern.startswith(OPEN_PREFIXES)
                or (metrics_public and pattern == "/metrics"))


def is_loopback(host: str) -> bool:
    """``host`` is only reachable from this machine: ``localhost``, 127.0.0.0/8 or ``::1``.
    Anything else (``0.0.0.0``, ``::``, a name, an interface's address) may be reachable
    from the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(http: HttpSettings, guarded: Iterable[str]) -> None:
    """Refuse to serve ``guarded`` routes (ones that need a token when tokens are set) on a
    network-reachable ``http.host`` with no ``http.api_tokens``: anyone who could reach the
    port would read every chat. ``http.allow_open_api = true`` is the explicit opt-out (a
    private network guarded otherwise); it is logged as a warning. Raises a one-line
    :class:`SettingsError` naming the fixes; returns quietly when nothing is exposed."""
    routes = sorted(set(guarded))
    if http.api_tokens or not routes or is_loopback(http.host):
        return
    listed = ", ".join(routes[:3]) + (", …" if len(routes) > 3 else "")
    if http.allow_open_api:
        log.warning("serving %s on %s with no http.api_tokens (http.allow_open_api = true): "
                    "anyone who can reach this address can use them", listed, http.host,
                    extra={"host": http.host})
        return
    raise SettingsError(
        f"refusing to serve {listed} on {http.host} (reachable from the network) without "
        "http.api_tokens: set PARLEY_HTTP__API_TOKENS='[\"<openssl rand -hex 32>\"]', or listen "
        "on 127.0.0.1 (http.host), or, on a network you guard otherwise, set "
        "http.allow_open_api = true (docs/security.md)")


def bearer_auth(tokens: Sequence[str], *, metrics_public: bool = False) -> Middleware:
    """Require ``Authorization: Bearer <token>`` (any of ``tokens``) on every route except
    :data:`OPEN_ROUTES`, :data:`OPEN_PREFIXES` and, if ``metrics_public``, ``/metrics``.

    Deny by default: a route a role adds later (an admin endpoint) is protected without
    being listed, and so are unknown paths (a 401, not a 404, tells nothing about routes).
    The decision uses the matched route's pattern, so how a path is spelled cannot dodge it.
    Tokens are compared in constant time, against every configured token.
    """
    secrets = [t.encode() for t in tokens]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        pattern = resource.canonical if resource is not None else None
        if not needs_token(pattern, metrics_public=metrics_public):
            return await handler(request)
        if pattern is not None and is_console(pattern):
            return await handler(request)  # the console checks its own cookie (and CSRF)
        status = bearer_status(request, secrets)
        if status == "missing" and request.method == "GET" and pattern in COOKIE_ROUTES:
            # The cookie is SameSite=Strict, so another site cannot make a browser send it.
            token = console_cookie(request)[1]
            if token is not None:
                status = "valid" if token_matches(token, secrets) else "invalid"
        if status == "missing":
            return error_response(401, "unauthorized",
                                  "this endpoint needs an Authorization: Bearer <token> header",
                                  headers={"WWW-Authenticate": 'Bearer realm="parley"'})
        if status == "invalid":
            return error_response(401, "unauthorized", "the bearer token is not valid",
                                  headers={"WWW-Authenticate":
                                           'Bearer realm="parley", error="invalid_token"'})
        return await handler(request)

    return auth


@web.middleware
async def json_route_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path no route serves, or a method its route does not, answered in Parley's JSON
    shape (404 ``not_found``, 405 ``method_not_allowed`` with ``Allow``) like every other
    error of the API and the webhooks, instead of aiohttp's text. The console answers its own
    (an HTML page)."""
    exc = request.match_info.http_exception
    if exc is None or request.path.startswith("/console"):
        return await handler(request)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(405, "method_not_allowed",
                              f"{request.method} is not served on this path; allowed: {allowed}",
                              headers={"Allow": allowed})
    if isinstance(exc, web.HTTPNotFound):
        return error_response(404, "not_found", "no route serves this path")
    return await handler(request)


def bearer_status(request: web.Request, secrets: Sequence[bytes]
                  ) -> Literal["missing", "invalid", "valid"]:
    """Whether ``request`` carries ``Authorization: Bearer <one of secrets>``. Compared in
    constant time against every secret."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "missing"
    # Header bytes that are not UTF-8 arrive as lone surrogates: give them back as the bytes
    # they were (they match no token) rather than fail to encode them.
    candidate = given.strip().encode("utf-8", "surrogateescape")
    return "valid" if token_matches(candidate, secrets) else "invalid"


def token_matches(candidate: bytes, secrets: Sequence[bytes]) -> bool:
    """Whether ``candidate`` is one of ``secrets``, compared in constant time against each."""
    ok = False
    for secret in secrets:  # no early exit: time does not tell which token came close
        ok |= hmac.compare_digest(candidate, secret)
    return ok


def console_cookie(request: web.Request) -> tuple[str | None, bytes | None]:
    """The nonce and token of the request's :data:`CONSOLE_COOKIE` (None for a part absent
    or malformed; a session with no token yet has an empty token part)."""
    nonce, sep, token = request.cookies.get(CONSOLE_COOKIE, "").partition(".")
    if not sep or not nonce.isalnum():
        return None, None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return nonce, None
    return nonce, raw or None


def console_cookie_value(nonce: str, token: bytes) -> str:
    """The :data:`CONSOLE_COOKIE` value for a session ``nonce`` holding ``token``."""
    return f"{nonce}.{base64.urlsafe_b64encode(token).decode().rstrip('=')}"


ServerHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
"""What aiohttp's low-level server calls for every request it parsed (the app's router)."""


def guard_expect(handler: ServerHandler) -> ServerHandler:
    """``handler`` behind a check of the ``Expect`` header: ``100-continue`` (any case) goes
    on to aiohttp; a value that is not UTF-8 gets 400 ``bad_request``, any other expectation
    417 ``expectation_failed``, both in Parley's JSON shape.

    Why around the server's handler rather than a middleware: aiohttp answers ``Expect`` per
    route before any middleware runs, also on paths that match no route, and its own answer to
    bytes that are not UTF-8 was a 500 (it put them in a text body it then failed to encode).
    """

    async def checked(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get(hdrs.EXPECT)
        if expect is None or expect.lower() == "100-continue":
            return await handler(request)
        try:  # aiohttp hands over header bytes that are not UTF-8 as lone surrogates
            expect.encode()
        except UnicodeEncodeError:
            return error_response(400, "bad_request", "the Expect header is not valid UTF-8")
        return error_response(417, "expectation_failed",
                              "the only expectation served is Expect: 100-continue")

    return checked


async def _kafka_preflight(app: web.Application) -> AsyncIterator[None]:
    # With TLS/SASL configured, a refused login or certificate would otherwise surface only
    # as endless reconnects; fail at start-up with one line instead. An unreachable broker
    # is not an error here: the roles ride out outages.
    from parley.kafka.clients import check_kafka

    await check_kafka(app[RUNTIME].settings.kafka)
    yield


def build_app(rt: Runtime, roles: Iterable[Role]) -> web.Application:
    """Health, readiness and metrics, then each role's routes and lifetime; a process adds the
    API description on top (:func:`parley.process.assemble`)."""
    http = rt.settings.http
    middlewares = [bearer_auth(http.api_tokens, metrics_public=http.metrics_public)
                   ] if http.api_tokens else []
    middlewares.append(json_route_errors)  # inside auth: an unknown path is still a 401 first
    # auto_decompress off: aiohttp's parser would inflate a compressed request body, and
    # answer a coding it has no library for (br, zstd) with its own text 400 before any
    # handler runs. No route takes a compressed body; the receiver answers any
    # Content-Encoding but identity with its JSON 415 before reading the body.
    app = web.Application(client_max_size=http.max_body_bytes + 64 * 1024, middlewares=middlewares,
                          handler_args={"auto_decompress": False})
    app[RUNTIME] = rt
    app[READINESS] = ReadinessCache(rt.readiness)  # the roles add their checks below
    kafka = rt.settings.kafka
    if kafka.bootstrap and kafka.security.protocol != "PLAINTEXT":
        app.cleanup_ctx.append(_kafka_preflight)  # first: before any role starts a client
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for role in roles:
        role.install(app, rt)
    app.on_cleanup.append(_close_key_ring)  # after every role's cleanup_ctx has stopped it
    # Before any role starts (they start when the app is set up): an exposed API changes
    # nothing, not even a consumer group's membership.
    check_exposure(http, (r.canonical for r in app.router.resources()
                          if needs_token(r.canonical, metrics_public=http.metrics_public)))
    return app


async def _close_key_ring(app: web.Application) -> None:
    await app[RUNTIME].close_key_ring()


#: How many ports above a taken one ``serve(next_free_port=True)`` tries.
PORT_SEARCH = 20


def bind(host: str, port: int, *, next_free_port: bool = False) -> socket.socket:
    """A socket bound to ``host:port``, not listening yet: aiohttp listens on it once the
    roles have started, so until then connections are refused, as before any bind.

    A taken port is a one-line :class:`ListenError`, or, with ``next_free_port`` (a process
    whose port nobody chose for it), the first free one of the next :data:`PORT_SEARCH`
    ports, with one warning line saying so.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last = port + PORT_SEARCH if next_free_port and port else port
    for candidate in range(port, last + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        # As asyncio's own servers: a restart may reuse a port with connections in TIME_WAIT.
        # A port another process listens on still fails to bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise ListenError(f"cannot listen on {host}:{candidate}: {exc.strerror or exc}"
                              " (check http.host and http.port)") from None
        if candidate != port:
            log.warning("port %d is in use (by `parley run`?): serving on port %d instead; "
                        "choose one with --port or http.port", port, candidate,
                        extra={"port": candidate, "port_in_use": port})
        return sock
    taken = f"port {port} is" if last == port else f"ports {port}-{last} are"
    raise ListenError(f"cannot listen on {host}:{port}: {taken} in use (by `parley run` or "
                      "another Parley process?); stop it, or choose another port with "
                      "http.port / PARLEY_HTTP__PORT (or --port, where the command has it)")


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(app: web.Application, rt: Runtime, *, stop: asyncio.Event | None = None,
                next_free_port: bool = False, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop``), then shut down gracefully.

    The port is bound first (see :func:`bind` for ``next_free_port``; ``sock``: one the
    caller bound earlier still), so a taken port stops the process before any role has
    started. Then the roles start, and the start-up lines say what is served where
    (:mod:`parley.startup`). At most ``http.max_connections`` connections are open at once
    (:mod:`parley.limits`), one that has not sent its request headers within
    ``http.idle_timeout_s`` is closed, and one answered before its body was read is closed
    once the body is drained or after :data:`~parley.limits.LINGER_S`. Every request's
    ``Expect`` header is checked first (:func:`guard_expect`). Shutdown order: stop
    accepting connections, let in-flight requests finish (bounded by
    ``http.shutdown_timeout_s``), then run the roles' cleanup (flush producers, commit) —
    also when a role failed to start, for those that did.
    """
    http = rt.settings.http
    sock = sock or bind(http.host, http.port, next_free_port=next_free_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # keepalive_timeout also bounds how long a connection may take to send its request
    # headers: aiohttp closes a connection still waiting for them at that deadline.
    # lingering_time: after an answer given before the request's body was read (413, 401,
    # 404…), aiohttp reads and discards the rest for this long before it closes, by default
    # 10 s, holding a slot of http.max_connections all the while (see LINGER_S).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=http.shutdown_timeout_s,
                           keepalive_timeout=http.idle_timeout_s, lingering_time=LINGER_S)
    try:
        await runner.setup()
    except BaseException:
        sock.close()
        await runner.cleanup()  # stop the roles that did start: no client left unclosed
        raise
    assert runner.server is not None  # set up above
    # Every request passes here first, whatever route it matches (or none): see guard_expect.
    runner.server.request_handler = guard_expect(runner.server.request_handler)
    try:
        try:
            await CappedSockSite(runner, sock, max_connections=http.max_connections,
                                 retry_after_s=http.retry_after_s).start()
        except OSError as exc:  # another process bound the port too, and listened first
            raise ListenError(f"cannot listen on {http.host}:{sock.getsockname()[1]}: "
                              f"{exc.strerror or exc}") from None
        url = _url(http.host, sock)
        log.info("listening", extra={"url": url, "event_loop": loop_name(loop)})
        log_startup(rt.settings, app, url)
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
