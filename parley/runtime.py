"""The per-process composition root: settings, topic names, metrics registry, readiness.

One :class:`Runtime` is built in ``main`` and passed down; roles (receiver, projector,
consumers) add themselves to the HTTP app through :class:`Role` — nothing is global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from contracts.topics import Topics
from parley.settings import Settings

if TYPE_CHECKING:
    from parley.privacy.ring import KeyRing

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else one line saying what is not ready."""


@dataclass
class Runtime:
    settings: Settings
    topics: Topics
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    _key_ring: KeyRing | None = field(default=None, repr=False)

    def key_ring(self) -> KeyRing:
        """The process's one key ring (:mod:`parley.privacy`), shared by its roles so that
        they share one cache; built on first call (a missing master key raises
        :class:`~parley.privacy.MasterKeyError` there: call it while the role is built).
        ``parley.http.build_app`` closes it when the app stops."""
        if self._key_ring is None:
            from parley.privacy.config import build_key_ring

            self._key_ring = build_key_ring(self.settings)
        return self._key_ring

    async def close_key_ring(self) -> None:
        ring, self._key_ring = self._key_ring, None
        if ring is not None:
            await ring.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings=settings, topics=Topics(prefix=settings.kafka.topic_prefix))


class Role(Protocol):
    """A part of Parley that runs inside the HTTP process."""

    name: str

    def install(self, app: web.Application, rt: Runtime) -> None:
        """Add routes, and start/stop work through ``app.cleanup_ctx``."""
