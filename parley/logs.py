"""Structured JSON logs on stderr, set up once by the process's ``main`` (never at import).

Every record is one JSON object: time, level, logger, message, and any ``extra={...}`` fields
(``event_id``, ``source``, ``topic``…). The formatter masks every configured secret in the
rendered record (:mod:`parley.secrets`), as a second line of defence behind code that never
logs secrets.
Requests aiohttp's HTTP parser refuses are logged as one bounded line each
(:class:`MalformedRequests`), not as a traceback per request.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar

import orjson

from parley.secrets import SecretMask

if TYPE_CHECKING:
    from parley.runtime import Role
    from parley.settings import Settings

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with every configured secret masked in whatever form it
    reached the text (:class:`parley.secrets.SecretMask`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._mask = SecretMask(secrets)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self._mask(orjson.dumps(doc, default=str).decode())


class MalformedRequests(logging.Filter):
    """A filter for aiohttp's server logger. aiohttp logs each request its HTTP parser
    refuses (answered 400) at ERROR, with a traceback quoting the request's bytes: a client
    sending junk writes a traceback per request, credentials included. Each becomes one
    WARNING line, ``malformed HTTP request from <client>: <error class>`` (fields ``client``
    and ``error``; nothing of the request), and at most ``per_interval`` of them pass per
    ``interval_s``. The first one past a window in which some were dropped is preceded by a
    line counting them (field ``suppressed``). Every other record (a 500: a bug of ours)
    passes unchanged, traceback and all."""

    PER_INTERVAL: ClassVar[int] = 10
    INTERVAL_S: ClassVar[float] = 60.0

    def __init__(self, per_interval: int = PER_INTERVAL, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._per_interval, self._interval_s, self._clock = per_interval, interval_s, clock
        self._window_start = -interval_s
        self._passed = self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # Looked up, not imported: a process that never imported aiohttp (a rebuild worker)
        # has no such error to limit, and is spared importing it (0.1 s of its start-up).
        http = sys.modules.get("aiohttp.http_exceptions")
        if http is None or not isinstance(exc, http.HttpProcessingError):
            return True
        now = self._clock()
        if now - self._window_start >= self._interval_s:
            if self._suppressed:
                logging.getLogger(record.name).warning(
                    "%d more malformed HTTP requests were not logged in the last %g s",
                    self._suppressed, self._interval_s, extra={"suppressed": self._suppressed})
            self._window_start, self._passed, self._suppressed = now, 0, 0
        if self._passed >= self._per_interval:
            self._suppressed += 1
            return False
        self._passed += 1
        # aiohttp's message names the client as its only argument; the exception's own text
        # quotes the request's bytes, so only its class is kept.
        client = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = "malformed HTTP request from %s: %s", (client, type(exc).__name__)
        record.client, record.error = client, type(exc).__name__
        record.exc_info = record.exc_text = None
        if record.levelno > logging.WARNING:  # aiohttp's DEBUG ones (TLS on a plain port) stay
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, MalformedRequests)]
    server.addFilter(MalformedRequests())
    # aiokafka logs each failed reconnect at ERROR; our own metrics and /readyz report outages.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level.upper() != "DEBUG"
                                           else logging.DEBUG)


def log_secrets(settings: Settings, roles: Iterable[Role] = ()) -> tuple[str, ...]:
    """Every secret the logs must never show: the settings' and the roles' own (a role with
    secrets the settings don't list, such as a consumer's side file, has ``secrets()``)."""
    own = (s for role in roles for s in getattr(role, "secrets", tuple)())
    return (*settings.all_secrets(), *own)
