"""Console sessions: login with an API token, a cookie, CSRF protection, logout.

The session is the cookie :data:`~parley.http.CONSOLE_COOKIE`: a random nonce and, once
logged in, one of ``http.api_tokens`` (the same tokens as ``/api/*``), HttpOnly (no script
reads it), SameSite=Strict (no other site's page makes the browser send it), Secure when
the console is served over TLS, for the browser's session only. Every request checks the
token again, so removing a token from the settings ends the sessions that used it.

CSRF: every POST must carry the session's synchronizer token (form field ``csrf`` or header
``X-CSRF-Token``): an HMAC of the session cookie, so it is tied to the session, changes at
each login, and cannot be computed by a page that cannot read the cookie. The login form
is protected the same way (its session has a nonce and no token yet).

With no ``http.api_tokens`` (a loopback address, or ``http.allow_open_api``), the console is
as open as the API: no login, but a session (for CSRF) all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets

from aiohttp import web

from parley.console.app import SESSION, Handler, Route, Session, console_of, error_page, session_of
from parley.http import CONSOLE_COOKIE, console_cookie, console_cookie_value, token_matches

__all__ = ["LOGIN", "LOGIN_POST", "LOGOUT", "guard"]

log = logging.getLogger("parley.console")

_CSRF_LABEL = b"parley console csrf v1"
#: Where a login may send the browser next: a console path, nothing else (no other host).
_NEXT = re.compile(r"/console(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%&=+:,-]*)?")


def _tokens(request: web.Request) -> list[bytes]:
    return [t.encode() for t in console_of(request).rt.settings.http.api_tokens]


def _session(request: web.Request) -> Session:
    nonce, token = console_cookie(request)
    new = nonce is None
    if nonce is None:
        nonce, token = secrets.token_hex(16), None
    tokens = _tokens(request)
    valid = not tokens or (token is not None and token_matches(token, tokens))
    return _make(nonce, token if valid else None, authenticated=valid, new=new)


def _make(nonce: str, token: bytes | None, *, authenticated: bool, new: bool) -> Session:
    key = console_cookie_value(nonce, token or b"").encode()
    csrf = hmac.new(key, _CSRF_LABEL, hashlib.sha256).hexdigest()
    return Session(nonce=nonce, token=token, authenticated=authenticated, csrf=csrf, new=new)


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    # Path "/": the live streams under /api read the same cookie (GET only, parley.http).
    response.set_cookie(CONSOLE_COOKIE, console_cookie_value(session.nonce, session.token or b""),
                        path="/", httponly=True, samesite="Strict", secure=request.secure)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def guard(route: Route, *, public: bool = False) -> Handler:
    """``route``'s handler behind the session: a GET page without a valid session redirects
    to the login page (a fragment, ``Route.page`` False, answers 401); every POST needs the
    session's CSRF token (else a 403 page, nothing done). ``public``: the login page itself."""
    handler = route.handler

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        request[SESSION] = session
        if not session.authenticated and not public:
            if route.page and request.method == "GET":
                response: web.StreamResponse = _redirect(
                    "/console/login?next=" + _quote(request.path_qs))
            else:
                response = web.Response(status=401, text="log in again\n")
        elif request.method == "POST" and not await _csrf_ok(request, session):
            response = error_page(request, 403, "this form has expired (or came from another "
                                  "site): reload the page and try again")
        else:
            response = await handler(request)
        if session.new and CONSOLE_COOKIE not in response.cookies:
            _set_cookie(request, response, session)
        return response

    return guarded


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        form = await request.post()
        field = form.get("csrf")
        given = field if isinstance(field, str) else ""
    return hmac.compare_digest(given.encode(), session.csrf.encode())


def _quote(path_qs: str) -> str:
    from urllib.parse import quote

    return quote(path_qs, safe="")


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: ``raw`` if it is a console path, else the overview."""
    ok = raw and _NEXT.fullmatch(raw) and "/." not in raw and "//" not in raw
    return raw if ok and raw else "/console"


async def login_page(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    next_ = safe_next(request.query.get("next"))
    if session is not None and session.authenticated:
        return _redirect(next_)
    return console_of(request).render(request, "login.html", title="Log in", next=next_,
                                      error=None)


async def login(request: web.Request) -> web.StreamResponse:
    """Check the posted token; a valid one starts a new session (a new nonce: a session
    cookie planted before login is never the logged-in one)."""
    form = await request.post()
    raw, next_raw = form.get("token"), form.get("next")
    token = raw.strip().encode() if isinstance(raw, str) else b""
    next_ = safe_next(next_raw if isinstance(next_raw, str) else None)
    tokens = _tokens(request)
    if tokens and not (token and token_matches(token, tokens)):
        log.info("console login refused: the token is not one of http.api_tokens",
                 extra={"remote": request.remote})
        return console_of(request).render(request, "login.html", status=401, title="Log in", next=next_,
                                          error="That token is not valid.")
    session = _make(secrets.token_hex(16), token if tokens else None,
                    authenticated=True, new=True)
    log.info("console login", extra={"remote": request.remote})
    response = _redirect(next_)
    _set_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = _redirect("/console/login")
    response.del_cookie(CONSOLE_COOKIE, path="/")
    log.info("console logout", extra={"remote": request.remote})
    return response


#: The session's own routes (the login page is reachable without a session).
LOGIN = Route("GET", "/login", login_page)
LOGIN_POST = Route("POST", "/login", login)
LOGOUT = Route("POST", "/logout", logout)
