"""Erasure and access over HTTP (the bearer tokens of every ``/api`` route):

* ``DELETE /api/visitors/{id}`` — forget the visitor (:func:`projector.forget.forget`):
  202 with the erasure's id, subject, aggregates and destroyed key count once the forget is
  published; the projection erases it moments later (``GET /api/visitors/{id}`` then shows
  ``erasure``). 404 for an unknown visitor, changing nothing.
* ``GET /api/visitors/{id}/export`` — everything held about the visitor, as JSON
  (:mod:`projector.subject_export`); 404 for an unknown visitor.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from contracts.topics import Topics
from parley.errors import StoreError
from parley.http import error_response
from parley.privacy.errors import KeyStoreUnavailable
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings
from projector.forget import UnknownSubject, forget, resolve
from projector.store import Store
from projector.subject_export import export_subject

__all__ = ["ErasureAccepted", "ErasureApi"]

_JSON = msgspec.json.Encoder()


class ErasureAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``DELETE /api/visitors/{id}``: the forget is published (its keys
    destroyed first); ``aggregates`` are what it erases (``"kind:id"``)."""

    erasure_id: str
    subject: str
    aggregates: tuple[str, ...]
    keys_destroyed: int


class ErasureApi:
    """The two routes above, over the projector's store (opened by the role)."""

    def __init__(self, store: Store, kafka: KafkaSettings, topics: Topics,
                 ring: KeyRing | None = None) -> None:
        """``ring``: the process's key ring; its key store destroys the subject's keys."""
        self._store = store
        self._kafka = kafka
        self._topics = topics
        self._ring = ring

    def install(self, app: web.Application) -> None:
        app.router.add_delete("/api/visitors/{id}", self.forget)
        app.router.add_get("/api/visitors/{id}/export", self.export)

    async def forget(self, request: web.Request) -> web.Response:
        try:
            subject = await resolve(self._store, visitor=request.match_info["id"])
        except UnknownSubject as exc:
            return error_response(404, "not_found", str(exc))
        except StoreError as exc:
            return _unavailable(exc)
        keys = None
        try:
            if self._ring is not None:
                keys = self._ring.store
                await keys.open()  # idempotent; the ring opens it lazily and closes it
            done = await forget(subject, store=self._store, kafka=self._kafka,
                                topics=self._topics, keys=keys, ring=self._ring)
        except KeyStoreUnavailable as exc:  # no key destroyed: nothing published either
            return error_response(503, "key_store_unavailable", str(exc),
                                  headers={"Retry-After": "5"})
        body = ErasureAccepted(erasure_id=done.erasure_id, subject=done.subject,
                               aggregates=done.aggregates, keys_destroyed=done.keys_destroyed)
        return web.Response(status=202, body=_JSON.encode(body), content_type="application/json")

    async def export(self, request: web.Request) -> web.Response:
        try:
            subject = await resolve(self._store, visitor=request.match_info["id"])
            document = await export_subject(self._store, subject)
        except UnknownSubject as exc:
            return error_response(404, "not_found", str(exc))
        except StoreError as exc:
            return _unavailable(exc)
        return web.Response(body=_JSON.encode(document), content_type="application/json")


def _unavailable(exc: StoreError) -> web.Response:
    return error_response(503, "unavailable", f"state store: {type(exc).__name__}",
                          headers={"Retry-After": "1"})
