"""The CRM's HTTP API as Parley uses it: signed, authenticated, idempotent JSON POSTs.

Only a 2xx answer is a delivery. Redirects are not followed (see
:class:`~consumers.crm.errors.CrmRedirected`): each is a non-retriable error naming its
``Location``, so the event is dead-lettered instead of silently lost or sent elsewhere.

One attempt per call; the runner's retry policy decides when to try again (it honours the
``retry_after_s`` this client reads from ``Retry-After``) and when to dead-letter. The
circuit breaker turns a CRM outage into fast, spaced failures instead of a retry storm.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Protocol

import aiohttp
import orjson

from consumers.crm.breaker import CircuitBreaker
from consumers.crm.config import CrmConfig
from consumers.crm.errors import CircuitOpen, CrmRedirected, CrmRejected, CrmUnavailable
from consumers.crm.signing import signature_headers
from parley.secrets import SecretMask

__all__ = ["CrmApi", "HttpCrmClient", "parse_retry_after"]


class CrmApi(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def post(self, path: str, doc: dict[str, Any], idempotency_key: str) -> None:
        """Send ``doc``; the CRM applies a given ``idempotency_key`` at most once."""
    async def erase(self, method: str, path: str, idempotency_key: str) -> None:
        """Delete what ``path`` names (``method``: DELETE or POST, no body); a 404 (already
        gone) counts as done."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpCrmClient:
    def __init__(self, config: CrmConfig) -> None:
        self.config = config
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s)
        self._mask = SecretMask(config.secrets())  # for the CRM's answers quoted in errors
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            base_url=self.config.base_url.rstrip("/") + "/",
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, doc: dict[str, Any], idempotency_key: str) -> None:
        await self._send("POST", path, orjson.dumps(doc), idempotency_key)

    async def erase(self, method: str, path: str, idempotency_key: str) -> None:
        await self._send(method, path, b"", idempotency_key, gone_ok=True)

    async def _send(self, method: str, path: str, body: bytes, idempotency_key: str, *,
                    gone_ok: bool = False) -> None:
        assert self._session is not None, "HttpCrmClient.start() was not called"
        now = time.monotonic()
        if not self.breaker.allow(now):
            wait = self.breaker.retry_in_s(now)
            raise CircuitOpen(f"CRM circuit open after repeated failures; next try in "
                              f"{wait:.1f}s", retry_after_s=wait)
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if self.config.auth_value:
            headers[self.config.auth_header] = self.config.auth_value
        if self.config.signing_secret:
            headers.update(signature_headers(self.config.signing_secret, idempotency_key,
                                             int(time.time()), body))
        try:
            async with self._session.request(method, path.lstrip("/"), data=body,
                                             headers=headers, allow_redirects=False) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                location = resp.headers.get("Location")
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.breaker.failure(time.monotonic())
            raise CrmUnavailable(f"CRM request {method} {path} failed: {type(exc).__name__}") from None
        if status == 429 or status >= 500:
            self.breaker.failure(time.monotonic())
            raise CrmUnavailable(f"CRM answered {status} to {method} {path}", retry_after)
        self.breaker.success()  # the CRM answered: it is up, whatever it said
        if 300 <= status < 400:
            where = self._mask((location or "nowhere (no Location header)")[:300])
            raise CrmRedirected(f"CRM answered {status} to {method} {path} with a redirect to "
                                f"{where}: redirects are not followed; set base_url to the "
                                "address that answers")
        if gone_ok and status == 404:
            return
        if not 200 <= status < 300:
            detail = self._mask(text[:200])
            raise CrmRejected(f"CRM rejected {method} {path} with {status}: {detail}")
