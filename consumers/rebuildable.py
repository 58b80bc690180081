"""The hook a consumer that keeps state implements so ``parley consumers rebuild NAME`` can
rebuild that state beside the live copy, without downtime (the search index is its first user).

A *copy* is one whole instance of the state (for search: an index file, or a PostgreSQL
schema). One copy is *live*: the consumer group writes into it and reads are served from it.
A rebuild (:mod:`consumers.rebuild`) goes:

1. :meth:`Rebuildable.create_shadow`: drop what an interrupted rebuild left, create an empty
   copy that is not live.
2. Read every partition of the consumer's topics from the beginning *without a consumer
   group* (the live group and its offsets are untouched) and hand each batch to
   :meth:`Rebuildable.apply_shadow`, until the end offsets, read again once reached.
3. :meth:`Rebuildable.switch`: in one atomic step, make the shadow live, recording with it
   the *handoff*: the next offset of every partition the shadow has applied.
4. The live consumer notices (:meth:`Rebuildable.resume_offsets`, asked by the runner before
   each batch: it also moves the consumer's own writes and reads to the new copy), drops
   the batch it fetched, seeks its partitions to the handoff offsets, commits them to its
   group, and then :meth:`Rebuildable.resumed` forgets them. So every record after the
   shadow's end point is applied to the new copy exactly once (only a crash between that
   commit and ``resumed`` applies records again from the handoff, as any redelivery does).
   A member that was not running at the switch does the same at its first batch.
5. Once the handoff is taken (or after a bounded wait), :meth:`Rebuildable.drop` the old copy.

A rebuild stopped before step 3 switches nothing: the live copy keeps serving, the shadow
is not live, and the next rebuild drops it first. See docs/consumers.md for an example.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

__all__ = ["Rebuildable", "resume_from"]

E_contra = TypeVar("E_contra", contravariant=True)


@runtime_checkable
class Rebuildable(Protocol[E_contra]):
    """A consumer's state that rebuilds into a shadow copy and switches atomically.

    The rebuild side (steps 1-3, 5 of the module doc) runs in the ``parley consumers
    rebuild`` process; the live side (step 4) in every running member of the group. Both
    may run at once, in different processes: the shadow is never the live copy.
    """

    async def create_shadow(self) -> str:
        """Drop any copy that is not live (leftovers of an interrupted rebuild), create an
        empty shadow copy, and return its name."""

    async def apply_shadow(self, events: Sequence[E_contra]) -> None:
        """Apply one batch to the shadow, with the same effect the live handler has."""

    async def switch(self, offsets: Mapping[TopicPartition, int]) -> str:
        """Make the shadow live in one atomic step, with ``offsets`` (next offset per
        partition) as its handoff; return the name of the copy that was live."""

    async def handoff_left(self) -> int:
        """How many partitions of the live copy's handoff no member has resumed yet."""

    async def drop(self, name: str) -> None:
        """Drop copy ``name``; never the live one."""

    async def resume_offsets(self, assigned: Collection[TopicPartition]
                             ) -> dict[TopicPartition, int]:
        """Live side, before each batch: follow the live copy if a rebuild switched it, and
        return the handoff offsets of ``assigned`` partitions not yet resumed (usually
        none; this must be cheap)."""

    async def resumed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Live side: these handoff offsets are committed to the group; forget them."""


async def resume_from(kc: AIOKafkaConsumer, state: Rebuildable[Any],
                      offsets: Mapping[TopicPartition, int],
                      batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
    """Step 4 for the runner (which holds its batch lock, with no commit in flight): drop
    ``batch`` unhandled, seek the handoff partitions to their offsets and every other
    partition of the batch back to its first record, commit the handoff, then tell
    ``state``. A commit the group refuses (a rebalance) is not reported: the partition's
    next owner resumes from the same handoff."""
    assigned = kc.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    for tp, records in batch.items():
        if tp not in mine and tp in assigned and records:
            kc.seek(tp, records[0].offset)
    for tp, offset in mine.items():
        kc.seek(tp, offset)
    if not mine:
        return
    try:
        await kc.commit(mine)
    except CommitFailedError:
        return
    await state.resumed(mine)
