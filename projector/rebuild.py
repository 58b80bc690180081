"""Rebuild a projection from the log, beside the live one, and switch reads when caught up.

Steps:

1. Pick the new copy's name (the next ``vN`` unless given), refuse the live name (names
   compare ignoring case, as the stores compare them: ``V1`` is ``v1``), and create it
   empty (a leftover copy of an interrupted rebuild with that name is dropped first; the
   store itself refuses to drop the live copy, should it have become live since).
2. Assign every partition of the event topics **without a consumer group** (the live runner's
   group and its offsets are untouched), seek to the beginning, and read the end offsets.
3. Fold batches into the new copy exactly like the live runner (same :class:`Folder`; rows and
   next offsets in one store transaction per batch), printing progress — records done,
   records/s, ETA — after the first batch that ends ``progress_every_s`` after the last
   print. Batches are larger than the runner's (``max_records``, 50,000: three to five
   seconds each), since nobody waits on a copy that is not live yet and every store
   transaction costs a rewrite of the index pages it touches
   (:func:`~projector.rebuild_batches.next_batch`): 50,000 rebuilt 1,000,000 records in
   93 s against 98-103 s with 20,000, for ~380 MiB more peak memory (docs/benchmarks.md,
   "Parallel rebuilds"; a parallel rebuild's workers keep 20,000). A batch's transaction
   is written while the next batch is folded
   (:class:`~projector.rebuild_batches.BatchWriter`): the store works in its own thread or
   connection, so writing no longer waits for folding nor folding for writing. At most one
   transaction is in flight, they commit in batch order, a state the fold reads from the
   store never waits for it (every state it writes is still cached: so what the fold reads
   was committed before), and a batch counts as done in the progress only once it
   committed.
4. When the end offsets read at the start are reached, read the end offsets again and catch
   up to those, so the switch lands close to the head of the log.
5. Verify: compare the new copy with the live one (:mod:`projector.verify`) over the
   aggregates both folded from the same records, print the summary and keep it with the
   new copy (``parley projections status`` shows it). Any difference refuses the switch
   (:class:`VerificationFailed`: the live copy keeps serving, the new one stays, not live)
   unless ``accept_changes`` (the fold changed on purpose).
6. ``set_live`` the new copy: reads switch atomically. The live runner notices on its next
   batch, drops its cache and seeks to the new copy's stored offsets, so records that arrived
   after step 4 are applied to the new copy by the runner.
7. Drop the old copy.

Meanwhile the query API keeps answering from the old copy; it never sees a half-built one.
A rebuild that stops before step 6 (an error, a refusal, an interrupt) switches nothing.
"""

from __future__ import annotations

import gc
import re
import sys
from dataclasses import dataclass
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import Topics
from parley.kafka.clients import make_admin, make_consumer
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings
from projector.dlq import DeadLetters
from projector.errors import ProjectorError
from projector.folder import Folder, gc_paused
from projector.rebuild_batches import BatchWriter, Progress, next_batch
from projector.store import Store, projection_name
from projector.verify import Verification, describe, verify

__all__ = ["RebuildError", "RebuildReport", "VerificationFailed", "event_partitions",
           "new_copy", "next_version", "rebuild", "switch"]

_VERSION = re.compile(r"v(\d+)")


class RebuildError(ProjectorError):
    """A rebuild cannot start as asked (e.g. the target name is the live projection)."""


class VerificationFailed(RebuildError):
    """The rebuilt copy differs from the live one: reads were not switched."""


@dataclass(frozen=True, kw_only=True)
class RebuildReport:
    name: str
    previous: str | None
    records: int
    dead_letters: int
    seconds: float
    #: The comparison with the previous live copy (None when there was none).
    verification: Verification | None = None


def next_version(names: list[str]) -> str:
    """``v<N+1>`` for the greatest ``vN`` among ``names`` (``v1`` when there is none)."""
    numbers = [int(m.group(1)) for n in names if (m := _VERSION.fullmatch(n))]
    return f"v{max(numbers, default=0) + 1}"


async def rebuild(store: Store, kafka: KafkaSettings, topics: Topics, *,
                  name: str | None = None, dead_letters: DeadLetters | None = None,
                  out: TextIO | None = None, progress_every_s: float = 2.0,
                  max_records: int = 50_000, publish_states: bool = False,
                  accept_changes: bool = False, ring: KeyRing | None = None) -> RebuildReport:
    """Replay the event topics into a new projection copy and make it live (see module doc).

    ``publish_states``: also write every state the rebuild commits into the store's outbox
    (in the same transactions), for the projector's state publisher to send to the state
    topics — what consumers of state topics need after a change of the fold. Without it the
    state topics keep what the live projection published; versions are the same either way
    (they count log positions, not batches).
    """
    out = out or sys.stderr
    # Step 1: the new copy.
    previous, name = await new_copy(store, name)

    # Step 2: every partition from the beginning, no consumer group.
    consumer = make_consumer(kafka, group_id=None, max_poll_records=max_records,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tps = await event_partitions(kafka, topics)
        consumer.assign(tps)
        if tps:
            await consumer.seek_to_beginning(*tps)
        begin = await consumer.beginning_offsets(tps) if tps else {}
        target: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
        total = sum(target[tp] - begin[tp] for tp in tps)
        print(f"rebuild {name}: replaying {total} records from {len(tps)} partitions "
              f"(live: {previous or 'none'})", file=out, flush=True)
        progress = Progress(name, total, out, progress_every_s)
        writer = BatchWriter(store, name, progress.add, publish=publish_states)
        folder = Folder(store, cache_size=200_000, fresh=True, ring=ring)  # step 1 created it empty
        dead = 0
        refreshed = False
        while True:
            if await _caught_up(consumer, target):
                await writer.drain()  # progress.done below counts committed records
                if refreshed:
                    break
                # Step 4: once more, to the current end of the log.
                refreshed = True
                target = await consumer.end_offsets(tps) if tps else {}
                positions = {tp: await consumer.position(tp) for tp in tps}
                progress.total = progress.done + sum(
                    max(0, target[tp] - positions[tp]) for tp in tps)
                continue
            # Step 3: fold one batch into the new copy.
            records = await next_batch(consumer, max_records)
            if not records:
                continue
            n = len(records)
            with gc_paused():  # see projector.folder.gc_paused
                result = await folder.fold(name, records)
                if result.dead:
                    dead += len(result.dead)
                    if dead_letters is not None:
                        await dead_letters.send(result.dead, name)
                await writer.commit(result.rows, result.offsets, n)
                # Remembered while its transaction is still being written: the next batch
                # folds on these states. Should that transaction fail, the rebuild fails.
                folder.remember(result.states, result.covers)
                del result, records
            # What survives a batch (cached states) lives for many batches: take it out of
            # the collector's view, or every few batches a full collection walks the whole
            # cache again (a batch's survivors are a quarter of the old generation). Only
            # reference cycles among these objects would wait for the unfreeze below; the
            # fold's states and refs have none.
            gc.freeze()
    finally:
        gc.unfreeze()
        await writer.abandon()
        await consumer.stop()
    progress.add(0, force=True)

    previous, checked = await switch(store, name, out, accept_changes=accept_changes)
    return RebuildReport(name=name, previous=previous, records=progress.done,
                         dead_letters=dead, seconds=progress.elapsed_s, verification=checked)


async def new_copy(store: Store, name: str | None) -> tuple[str | None, str]:
    """Step 1: create the copy ``name`` (default: the next ``vN``) empty; the live copy's name
    (None if none) and the new copy's canonical name. Refuses the live name."""
    previous = await store.live_projection()
    existing = await store.list_projections()
    given, name = name, next_version(existing) if name is None else projection_name(name)
    if name == previous:  # both canonical
        spelled = (name if given in (None, name)
                   else f"{given!r} names {name} (projection names ignore case), which")
        raise RebuildError(f"{spelled} is the live projection; rebuild into another name "
                           f"(default: {next_version(existing)})")
    if name in existing:
        await store.drop_projection(name)  # leftover of an interrupted rebuild; never the live one
    await store.create_projection(name)
    return previous, name


async def switch(store: Store, name: str, out: TextIO, *,
                 accept_changes: bool) -> tuple[str | None, Verification | None]:
    """Steps 5-7 once the copy ``name`` is caught up: verify it against the live copy, make it
    live, drop the old one; the old copy's name and the verification (None without one)."""
    # Step 5: verify against the live copy (a copy made live meanwhile, e.g. by a projector
    # started on an empty store, is the one reads would leave).
    previous = await store.live_projection()
    checked = None
    if previous is not None and previous != name:
        checked = await verify(store, previous, name)
        checked.accepted = checked.differ > 0 and accept_changes
        await store.set_verification(name, checked.to_json())
        for line in describe(checked):
            print(f"rebuild {name}: {line}", file=out, flush=True)
        if checked.differ and not accept_changes:
            raise VerificationFailed(
                f"{name} differs from the live copy {previous} in {checked.differ} of "
                f"{checked.compared} aggregates compared (summary above); reads stay on "
                f"{previous} and {name} is kept, not live: inspect it, then `parley projections "
                f"rebuild {name} --accept-changes` if the fold changed on purpose, or "
                f"`parley projections drop {name}`")

    # Step 6: switch reads; Step 7: drop the old copy.
    await store.set_live(name)
    print(f"rebuild {name}: live projection switched {previous or 'none'} -> {name}",
          file=out, flush=True)
    if previous is not None and previous != name:
        await store.drop_projection(previous)
        print(f"rebuild {name}: dropped {previous}", file=out, flush=True)
    return previous, checked


async def event_partitions(kafka: KafkaSettings, topics: Topics) -> list[TopicPartition]:
    """Every partition of the event topics that exist (missing topics have none)."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.event_topics))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0
            for p in sorted(t["partitions"], key=lambda p: int(p["partition"]))]


async def _caught_up(consumer: AIOKafkaConsumer, target: dict[TopicPartition, int]) -> bool:
    for tp, end in target.items():
        if await consumer.position(tp) < end:
            return False
    return True
