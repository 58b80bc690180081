"""A partition-parallel rebuild: N worker processes fold the log into the new copy together.

``parley projections rebuild --workers N`` (N > 1) runs this instead of the one-process
:func:`projector.rebuild.rebuild`; its steps 1 and 5-7 are the same functions. This process,
the *coordinator*:

1. Creates the new copy empty (:func:`~projector.rebuild.new_copy`).
2. Reads the event topics' beginning and end offsets: the end offsets are the *target* every
   partition of the copy must reach.
3. Starts N worker processes (:mod:`projector.rebuild_worker`): members of the consumer group
   ``<prefix>.rebuild.<copy>``, each folding the partitions Kafka assigns it and committing
   rows and next offsets in one store transaction per batch (with SQLite, through this
   process's one writer connection: :mod:`projector.rebuild_pipe`). Meanwhile it prints progress —
   records, records/s, ETA — summed from the copy's stored offsets, so it covers every
   member. A worker that exits before the copy is done is replaced (its partitions have
   moved to the others meanwhile, who resumed from the copy's stored offsets), at most N
   times in all; after that, or if none is left, the rebuild fails: nothing switched.
4. Once every partition's stored offset reached the target, waits for the workers to leave,
   then folds what arrived meanwhile in this process (one member, to the end offsets read
   now), so the switch lands close to the head of the log.
5. Verifies against the live copy, switches reads and drops the old copy
   (:func:`~projector.rebuild.switch`) — once, only after step 4.

Whatever stops it before step 5 (a failure, Ctrl-C, SIGTERM) terminates the workers and
switches nothing: the live copy keeps serving, the new copy stays, not live. Its stored
offsets are the truth, so ``parley projections rebuild NAME`` starts that copy over.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TextIO

from aiokafka import TopicPartition

from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.loop import EventLoopName
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings, Settings
from projector.dlq import DeadLetters
from projector.rebuild import RebuildError, RebuildReport, event_partitions, new_copy, switch
from projector.rebuild_batches import Progress
from projector.rebuild_pipe import CopyWriter, PipeStore, serve
from projector.rebuild_worker import Member, MemberOptions, Target
from projector.store import Store, projection_name
from projector.stores import open_store

__all__ = ["ParallelOptions", "join_rebuild", "publish_target", "rebuild_parallel"]

log = logging.getLogger("parley.projector.rebuild")


@dataclass(frozen=True, kw_only=True)
class ParallelOptions:
    """What every worker process needs to rebuild on its own (it is pickled to them)."""

    workers: int
    #: the store's URL: each worker opens the store itself
    store_url: str
    kafka: KafkaSettings
    prefix: str
    member: MemberOptions = field(default_factory=MemberOptions)
    #: produce dead letters to ``<prefix>.dlq.projector`` (else only count them)
    dead_letters: bool = True
    log_level: str = "WARNING"
    secrets: tuple[str, ...] = ()
    event_loop: EventLoopName = "auto"
    #: the settings each worker builds its key ring from (docs/privacy.md); None: sealed
    #: records fold to their facts
    key_settings: Settings | None = None


async def rebuild_parallel(store: Store, options: ParallelOptions, *, name: str | None = None,
                           dead_letters: DeadLetters | None = None, out: TextIO | None = None,
                           progress_every_s: float = 2.0,
                           accept_changes: bool = False) -> RebuildReport:
    """Rebuild into a new copy with ``options.workers`` processes (see the module doc)."""
    out = out or sys.stderr
    kafka, topics = options.kafka, Topics(prefix=options.prefix)
    # Step 1
    previous, name = await new_copy(store, name)
    # Step 2
    tps = await event_partitions(kafka, topics)
    begin, target = await _offsets(kafka, tps)
    total = sum(end - begin[tp] for tp, end in target.items())
    print(f"rebuild {name}: replaying {total} records from {len(tps)} partitions with "
          f"{options.workers} workers in group {topics.rebuild_group_id(name)} "
          f"(live: {previous or 'none'})", file=out, flush=True)
    progress = Progress(name, total, out, progress_every_s)
    # Step 3: the target goes to the group first, where members started elsewhere read it
    await publish_target(kafka, topics.rebuild_group_id(name), target)
    dead = await _run_workers(store, options, name, begin, target, progress, out,
                              live=previous or "none")
    _, now = await _offsets(kafka, tps)
    if any(now.get(tp, 0) > end for tp, end in target.items()) or set(now) - set(target):
        ring = _ring(options)
        late = Member(store, kafka, topics, name, _keys(now), replace(options.member, members=1),
                      dead_letters, ring=ring)
        try:
            await late.run(asyncio.Event())
        finally:
            if ring is not None:
                await ring.close()
        dead += late.dead_letters
        progress.total = progress.done + late.records
        progress.done += late.records
    progress.add(0, force=True)
    # Step 5
    previous, checked = await switch(store, name, out, accept_changes=accept_changes)
    return RebuildReport(name=name, previous=previous, records=progress.done, dead_letters=dead,
                         seconds=progress.elapsed_s, verification=checked)


async def _run_workers(store: Store, options: ParallelOptions, name: str,
                       begin: dict[TopicPartition, int], target: dict[TopicPartition, int],
                       progress: Progress, out: TextIO, *, live: str) -> int:
    """Run ``options.workers`` worker processes until every partition of the copy reached
    ``target`` (replacing a worker that exits early, at most N times); their dead letters."""
    ctx = multiprocessing.get_context("spawn")  # no forked event loops, threads or sockets
    results = ctx.SimpleQueue()
    job = replace(options, member=replace(options.member, members=options.workers,
                                          parent_pid=os.getpid()))
    procs: list[BaseProcess] = []
    # SQLite: the workers' batches come here over pipes, to one writer connection
    # (projector.rebuild_pipe); other stores take each worker's commits directly.
    writer = open_store(options.store_url, shared=True) if _one_writer(options) else None
    serving: list[asyncio.Task[None]] = []

    def start() -> None:
        # Two pipes per worker: its commits, and its loads and offset reads (which must not
        # wait behind a commit: projector.rebuild_pipe).
        pipes = [ctx.Pipe(), ctx.Pipe()] if writer is not None else []
        theirs = tuple(end for _, end in pipes) or None
        proc = ctx.Process(target=_worker_process, args=(job, name, target, results, theirs),
                           name=f"rebuild-{name}-{os.getpid()}-{len(procs)}", daemon=True)
        proc.start()
        procs.append(proc)
        if writer is not None:
            for (ours, end), role in zip(pipes, ("commits", "reads"), strict=True):
                end.close()  # the worker's end: once it exits, serve() reads the end of the pipe
                serving.append(asyncio.create_task(serve(writer, ours),
                                                   name=f"{proc.name}-{role}"))

    if writer is not None:
        await writer.open()
    try:
        for _ in range(options.workers):
            start()
        gone: set[str] = set()  # workers whose exit was handled
        while True:
            # Exits first, then the offsets: a worker leaves only once the copy is done, so
            # one that left before this read shows in it as done.
            exited = [p for p in procs if p.exitcode is not None and p.name not in gone]
            stored = await store.offsets(name)
            progress.add(_done(stored, begin, target) - progress.done)
            if progress.done >= progress.total:
                break
            running = [p for p in procs if p.exitcode is None]
            for proc in exited:
                gone.add(proc.name)
                print(f"rebuild {name}: worker {proc.name} exited ({proc.exitcode}) before the "
                      f"copy was done; its partitions move to the others", file=out, flush=True)
                if len(gone) <= options.workers:  # at most N replacements in all
                    start()
                    running.append(procs[-1])
            if not running:
                raise RebuildError(
                    f"every worker of the rebuild of {name} failed ({len(gone)} exits); reads "
                    f"stay on {live} and {name} is kept, not live: see the "
                    f"workers' errors above, then rebuild again")
            await asyncio.sleep(0.5)  # progress from the store, twice a second
        # The workers see the copy done and leave the group.
        await asyncio.gather(*(asyncio.to_thread(p.join, 60.0) for p in procs))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        await asyncio.gather(*(asyncio.to_thread(p.join, 30.0) for p in procs))
        # Every worker has exited: each pipe is at its end, so its serve() returns (after
        # answering a request already read: a commit sent before the exit still lands).
        await asyncio.gather(*serving, return_exceptions=True)
        if writer is not None:
            await writer.close()
    dead = 0
    while not results.empty():
        dead += int(results.get())
    return dead


async def publish_target(kafka: KafkaSettings, group: str, target: dict[TopicPartition, int]
                         ) -> None:
    """Commit the target end offsets as the rebuild group's offsets, before any member runs
    (an empty group takes commits from a client that never joins it): members started on
    other machines (:func:`join_rebuild`) read the target there. Members never read or
    commit the group's offsets themselves; the copy's stored offsets are the progress."""
    if not target:
        return
    consumer = make_consumer(kafka, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(target))  # no subscribe: this client never joins the group
        await consumer.commit(dict(target))
    finally:
        await consumer.stop()


async def join_rebuild(store: Store, options: ParallelOptions, name: str,
                       out: TextIO | None = None, progress_every_s: float = 2.0) -> int:
    """Join the parallel rebuild of copy ``name`` started elsewhere (``parley projections
    rebuild NAME --workers N --join``) with ``options.workers`` more members, until the copy
    reached its target; returns their dead letters. Only the coordinator switches reads."""
    out = out or sys.stderr
    kafka, topics = options.kafka, Topics(prefix=options.prefix)
    name = projection_name(name)
    group = topics.rebuild_group_id(name)
    live = await store.live_projection()
    if live == name:
        raise RebuildError(f"{name} is the live copy: there is no rebuild of it to join")
    if name not in await store.list_projections():
        raise RebuildError(f"no copy {name} in the store: start the rebuild first "
                           f"(`parley projections rebuild {name} --workers N`), then join it")
    target = await _target(kafka, group)
    if not target:
        raise RebuildError(f"no parallel rebuild of {name} to join: the group {group} has no "
                           f"target offsets (start it with `parley projections rebuild {name} "
                           f"--workers N`)")
    begin, _ = await _offsets(kafka, list(target))
    progress = Progress(name, sum(end - begin[tp] for tp, end in target.items()), out,
                        progress_every_s)
    print(f"rebuild {name}: joining with {options.workers} workers in group {group} "
          f"(the process that started it verifies and switches reads)", file=out, flush=True)
    dead = await _run_workers(store, options, name, begin, target, progress, out,
                              live=live or "none")
    progress.add(0, force=True)
    return dead


async def _target(kafka: KafkaSettings, group: str, timeout_s: float = 30.0
                  ) -> dict[TopicPartition, int]:
    """The target a coordinator committed to the rebuild group (empty if none). Retries
    while Kafka answers with a retriable error (a group's coordinator is found lazily)."""
    from parley.kafka.clients import make_admin
    from parley.kafka.retry import retrying

    admin = make_admin(kafka)
    await admin.start()
    try:
        offsets = await retrying(lambda: admin.list_consumer_group_offsets(group), timeout_s)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset > 0}


async def _offsets(kafka: KafkaSettings, tps: list[TopicPartition]
                   ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Beginning offsets of ``tps``, and the end offsets of those that hold records."""
    if not tps:
        return {}, {}
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return begin, {tp: off for tp, off in end.items() if off > begin[tp]}


def _keys(target: dict[TopicPartition, int]) -> Target:
    return {(tp.topic, tp.partition): end for tp, end in target.items()}


def _done(stored: dict[tuple[str, int], int], begin: dict[TopicPartition, int],
          target: dict[TopicPartition, int]) -> int:
    """Records of the target the copy has committed."""
    return sum(min(max(stored.get((tp.topic, tp.partition), 0), begin[tp]), end) - begin[tp]
               for tp, end in target.items())


def _one_writer(options: ParallelOptions) -> bool:
    """Whether the workers write through this process (SQLite: one writer, see
    :mod:`projector.rebuild_pipe`) rather than each with a connection of its own."""
    return options.store_url.lower().startswith("sqlite:")


def _worker_process(options: ParallelOptions, name: str, target: dict[TopicPartition, int],
                    results: multiprocessing.SimpleQueue[int],
                    conn: tuple[Connection, Connection] | None) -> None:
    """A worker process: one :class:`Member` on its own event loop, writing through ``conn``
    (its commit and read pipes to the process that started it) if given, else with its own
    store connection."""
    from parley import loop
    from parley.logs import setup_logging

    setup_logging(options.log_level, options.secrets)
    try:
        dead = loop.run(_member(options, name, _keys(target), conn), options.event_loop)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - one line; the coordinator replaces the worker
        log.error("rebuild worker failed: %s: %s", type(exc).__name__, exc)
        sys.exit(1)
    results.put(dead)


def _ring(options: ParallelOptions) -> KeyRing | None:
    if options.key_settings is None:
        return None
    from parley.privacy.config import build_key_ring

    return build_key_ring(options.key_settings)


async def _member(options: ParallelOptions, name: str, target: Target,
                  conn: tuple[Connection, Connection] | None) -> int:
    from parley.kafka.clients import make_producer
    from projector.dlq import KafkaDeadLetters

    topics = Topics(prefix=options.prefix)
    store: Store | None = None
    copy: CopyWriter
    if conn is None:
        store = copy = open_store(options.store_url, shared=True)
        await store.open()
    else:
        copy = PipeStore(*conn)
    producer = make_producer(options.kafka) if options.dead_letters else None
    ring: KeyRing | None = None
    try:
        if producer is not None:
            await producer.start()
        letters = KafkaDeadLetters(producer, topics) if producer is not None else None
        ring = _ring(options)
        member = Member(copy, options.kafka, topics, name, target, options.member, letters,
                        ring=ring)
        await member.run(asyncio.Event())
        return member.dead_letters
    finally:
        if ring is not None:
            await ring.close()
        if producer is not None:
            await producer.stop()
        if store is not None:
            await store.close()
