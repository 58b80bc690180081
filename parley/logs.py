"""Structured JSON logs on stderr, set up once by the process's ``main`` (never at import).

Every record is one JSON object: time, level, logger, message, and any ``extra={...}`` fields
(``event_id``, ``source``, ``topic``…). A redaction filter masks every configured secret in
the rendered record, as a second line of defence behind code that never logs secrets.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from parley.runtime import Role
    from parley.settings import Settings

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

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
        text = orjson.dumps(doc, default=str).decode()
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs each failed reconnect at ERROR; our own metrics and /readyz report outages.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level.upper() != "DEBUG"
                                           else logging.DEBUG)


def log_secrets(settings: Settings, roles: Iterable[Role] = ()) -> tuple[str, ...]:
    """Every secret the logs must never show: the settings' and the roles' own (a role with
    secrets the settings don't list, such as a consumer's side file, has ``secrets()``)."""
    own = (s for role in roles for s in getattr(role, "secrets", tuple)())
    return (*settings.all_secrets(), *own)
