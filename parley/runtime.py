"""The per-process composition root: settings, topic names, metrics registry, readiness.

One :class:`Runtime` is built in ``main`` and passed down; roles (receiver, projector,
consumers) add themselves to the HTTP app through :class:`Role` — nothing is global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from contracts.topics import Topics
from parley.settings import Settings

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else one line saying what is not ready."""


@dataclass
class Runtime:
    settings: Settings
    topics: Topics
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings=settings, topics=Topics(prefix=settings.kafka.topic_prefix))


class Role(Protocol):
    """A part of Parley that runs inside the HTTP process."""

    name: str

    def install(self, app: web.Application, rt: Runtime) -> None:
        """Add routes, and start/stop work through ``app.cleanup_ctx``."""
