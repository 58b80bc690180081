"""Commits a consumer group's offsets in the background (step 3 of the runner's protocol).

One committer task sends the latest offsets while the next batch is handled; offsets
scheduled while a commit is in flight are folded into the next one, so a slow commit costs
no throughput, only a wider redelivery window. The runner drains it (:meth:`drain`) on
revocation and on stop, so that the next owner starts exactly after the last side effect.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

__all__ = ["Committer"]

log = logging.getLogger("parley.consumers.runner")


class Committer:
    """Background offset commits of one group member (``kc``)."""

    def __init__(self, kc: AIOKafkaConsumer, consumer: str) -> None:
        self._kc = kc
        self._consumer = consumer
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[TopicPartition, int] = {}

    def schedule(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` soon (with any scheduled before); raises the error of an earlier
        commit that failed (other than for a lost generation), which ends the runner."""
        self._pending.update(offsets)
        task = self._task
        if task is not None and task.done():
            self._task = None
            task.result()
        if self._pending and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def drain(self) -> None:
        """Wait until every scheduled offset is committed."""
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._pending:
            await self._loop()

    async def _loop(self) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            try:
                await self._kc.commit(offsets)
            except CommitFailedError:
                # The group moved on without us (e.g. a handler outlived max.poll.interval):
                # the new owner re-reads from the previous commit; at-least-once, never a loss.
                log.warning("commit failed after a rebalance; events will be redelivered",
                            extra={"consumer": self._consumer})
