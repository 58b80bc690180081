"""Structured JSON logs on stderr, set up once by the process's ``main`` (never at import).

Every record is one JSON object: time, level, logger, message, and any ``extra={...}`` fields
(``event_id``, ``source``, ``topic``…). A redaction filter masks every configured secret in
the rendered record, as a second line of defence behind code that never logs secrets.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from parley.runtime import Role
    from parley.settings import Settings

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _masked_forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` a rendered record can hold: as is; as ``repr()`` or
    ``ascii()`` print it (``%r`` in a message, a secret inside a list or dict in ``extra``,
    its UTF-8 bytes); and each of those inside a JSON string (``"`` and ``\\`` escaped,
    control characters as ``\\n`` or ``\\u00XX``), once or twice (a JSON document logged as
    a string)."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], repr(secret.encode())[2:-1]}
    for _ in range(2):
        forms |= {orjson.dumps(form).decode()[1:-1] for form in forms}
    return forms


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with every configured secret replaced by ``***`` in
    whatever form it reached the text (see :func:`_masked_forms`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        forms = {form for s in secrets if s for form in _masked_forms(s)}
        # Longest first: a secret that contains another is masked whole, not in part.
        self._mask = (re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
                      if forms else None)

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
        return self._mask.sub("***", text) if self._mask is not None else text


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
