"""Errors of the CRM client. The runner reads ``retriable`` (and ``retry_after_s``)."""

from __future__ import annotations

from consumers.errors import HandlerError

__all__ = ["CircuitOpen", "CrmError", "CrmRejected", "CrmUnavailable"]


class CrmError(HandlerError):
    """Base class."""


class CrmUnavailable(CrmError):
    """429, 5xx, timeout or connection failure: try again later (after ``retry_after_s``)."""

    retriable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpen(CrmUnavailable):
    """The circuit breaker is open: no request was sent."""


class CrmRejected(CrmError):
    """The CRM refused the request as such (4xx other than 429): retrying cannot help; fix the
    data or the field mapping, then ``parley consumers dlq crm replay``."""

    retriable = False
