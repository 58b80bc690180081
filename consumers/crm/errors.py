"""Errors of the CRM client. The runner reads ``retriable`` (and ``retry_after_s``)."""

from __future__ import annotations

from consumers.errors import HandlerError

__all__ = ["CircuitOpen", "CrmError", "CrmRedirected", "CrmRejected", "CrmUnavailable"]


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
    data or the field mapping, then ``parley dlq crm replay``."""

    retriable = False


class CrmRedirected(CrmRejected):
    """The CRM answered with a redirect (3xx). Parley never follows one: a 301/302/303 would
    turn the POST into a GET whose 2xx looks like a delivery, a 307/308 would send the
    transcript and the auth header to another origin. Point ``base_url`` at the address the
    message names, then ``parley dlq crm replay``."""
