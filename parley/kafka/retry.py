"""Retrying a Kafka call while the error says trying again may help."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

__all__ = ["retrying"]

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], timeout_s: float = 30.0,
                   every_s: float = 0.5) -> T:
    """``await call()``, again every ``every_s`` while it raises a retriable Kafka error (e.g.
    the group coordinator of a brand-new cluster is still being elected), until ``timeout_s``;
    then, or on any other error, the error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or loop.time() > deadline:
                raise
            await asyncio.sleep(every_s)
