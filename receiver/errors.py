"""Why the receiver turns a request away. Each error maps to exactly one HTTP answer.

The handler reads ``status``, ``code`` and ``retriable`` — never a chain of ``except``s.
``detail`` is written for the provider's operator and never contains a credential, a
signature or body content beyond a JSON path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from receiver.signatures import AuthFailure

__all__ = [
    "BodyTimeout",
    "BodyTooLarge",
    "InvalidBody",
    "KafkaUnavailable",
    "Overloaded",
    "ReceiverError",
    "Unauthorized",
    "UnknownSource",
    "UnsupportedMediaType",
]


class ReceiverError(Exception):
    """A request the receiver does not acknowledge. Nothing was written to Kafka."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: Retrying the same request later may succeed (the provider should retry).
    retriable: ClassVar[bool] = False
    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: The answer's ``Retry-After`` seconds, for errors that have one.
        self.retry_after_s = retry_after_s


class InvalidBody(ReceiverError):
    """Malformed JSON, or JSON that does not fit the provider's contract (detail has the path).

    ``authenticated_body`` is the body when the request authenticated before it failed its
    contract: the only kind whose body a rejection record may keep (receiver/rejections.py).
    """

    status = 400
    code = "invalid_body"

    def __init__(self, detail: str, *, authenticated_body: bytes | None = None) -> None:
        super().__init__(detail)
        self.authenticated_body = authenticated_body


class Unauthorized(ReceiverError):
    """Authentication failed. One generic detail for every cause, so probing learns nothing;
    ``failure`` (which check failed, where) is for the server's log only."""

    status = 401
    code = "unauthorized"

    def __init__(self, failure: AuthFailure) -> None:
        super().__init__("authentication failed")
        self.failure = failure


class UnknownSource(ReceiverError):
    """No source of that name. The detail lists the configured names (they are URL paths,
    not secrets) but never echoes the requested one (a path may be anything)."""

    status = 404
    code = "unknown_source"

    def __init__(self, configured: Iterable[str]) -> None:
        names = sorted(configured)
        super().__init__(f"no source by that name is configured; configured: {', '.join(names)}"
                         if names else "no sources are configured (add a [sources.NAME] table "
                                       "to the configuration)")


class BodyTooLarge(ReceiverError):
    status = 413
    code = "body_too_large"


class BodyTimeout(ReceiverError):
    """The body did not arrive within ``http.body_timeout_s``; the connection is closed."""

    status = 408
    code = "body_timeout"


class Overloaded(ReceiverError):
    """The body would not fit in ``http.max_buffered_body_bytes`` now; it was not read."""

    status = 503
    code = "overloaded"
    retriable = True


class UnsupportedMediaType(ReceiverError):
    status = 415
    code = "unsupported_media_type"


class KafkaUnavailable(ReceiverError):
    """Kafka did not acknowledge in time. The provider should retry after ``retry_after_s``."""

    status = 503
    code = "kafka_unavailable"
    retriable = True

    def __init__(self, detail: str = "the event log is unavailable; retry later",
                 retry_after_s: int = 5) -> None:
        super().__init__(detail, retry_after_s)


class KeyStoreUnavailable(ReceiverError):
    """The key store did not answer, so the body cannot be sealed (docs/privacy.md): nothing
    is written, never personal data unencrypted. The provider should retry."""

    status = 503
    code = "key_store_unavailable"
    retriable = True

    def __init__(self, retry_after_s: int,
                 detail: str = "the key store is unavailable; retry later") -> None:
        super().__init__(detail, retry_after_s)
