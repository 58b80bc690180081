"""``parley projections status | rebuild [NAME] | rebuild analytics | drop NAME``.

Projection names are 1-64 characters of ``[A-Za-z0-9_]`` and compared ignoring case
(:func:`projector.store.projection_name`): ``rebuild V1`` and ``drop V1`` mean ``v1``.
``rebuild analytics`` is no copy's name: it rebuilds the live copy's report roll-ups
(:mod:`projector.analytics_rebuild`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from parley import loop
from parley.settings import Settings

if TYPE_CHECKING:
    from projector.rebuild_parallel import ParallelOptions

__all__ = ["dead_letter_groups", "register", "worker_count"]


def dead_letter_groups(settings: Settings) -> list[str]:
    """The projector's dead-letter group, for ``parley topics apply``."""
    from contracts.topics import PROJECTOR

    return [PROJECTOR]


def register(subparsers: Any) -> None:
    """Add the projections' commands to the top-level ``parley`` parser (``parley projector``,
    the process, is defined with the other processes in :mod:`parley.cli`)."""
    projections = subparsers.add_parser("projections",
                                        help="projection copies: status, rebuild, drop")
    psub = projections.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    psub.add_parser("status", help="each projection: live flag, offsets, lag, row counts, "
                                   "the verification kept from its rebuild"
                    ).set_defaults(handler=_cmd_status, local_kafka=True)
    rebuild = psub.add_parser(
        "rebuild", help="replay the log into a new copy, then switch reads; or `rebuild "
                        "analytics`: rebuild the live copy's report roll-ups only",
        description=ANALYTICS_HELP)
    rebuild.add_argument("name", nargs="?", default=None, action=_RebuildTarget,
                         help="name of the new copy (default: the next vN); 1-64 characters "
                              "of a-z, A-Z, 0-9 and _, case ignored; `analytics`: rebuild the "
                              "analytics of the live copy instead (above)")
    rebuild.add_argument("--publish-states", action="store_true",
                         help="also put every rebuilt state into the outbox, for the projector "
                              "to publish to the state topics (needed by state consumers after "
                              "a change of the fold)")
    rebuild.add_argument("--accept-changes", action="store_true",
                         help="switch reads even if the new copy differs from the live one "
                              "(the fold changed on purpose); without it a difference "
                              "refuses the switch and keeps the new copy, not live")
    rebuild.add_argument("--workers", default="1", metavar="N",
                         help="fold the event partitions in N worker processes, members of "
                              "the consumer group <prefix>.rebuild.<copy> (default 1: one "
                              "process, no group)")
    rebuild.add_argument("--join", action="store_true",
                         help="join the parallel rebuild of the copy NAME started elsewhere "
                              "(another machine or pod, same store and Kafka) with N more "
                              "workers; the process that started it switches reads")
    rebuild.set_defaults(handler=_cmd_rebuild, precheck=_rebuild_workers, local_kafka=True)
    drop = psub.add_parser("drop", help="delete a copy that is not live (e.g. the leftover of "
                                        "a failed rebuild)")
    drop.add_argument("name", help="the copy to delete (see `parley projections status`; "
                                   "case ignored)")
    drop.set_defaults(handler=_cmd_drop)


#: What ``rebuild analytics`` covers, in ``parley projections rebuild --help``.
ANALYTICS_HELP = """\
`parley projections rebuild analytics` rebuilds the live copy's analytics with the code
running now: the report roll-ups (each chat's fact, the tallies, the agents' days) and the
chats' and agents' `metrics`, recomputed from each chat's and agent's stored fold state into
shadow tables beside the live ones, while the projector keeps folding and the API keeps
answering from the live ones; then switches them in at once. It covers a change of
ROLLUP_VERSION (projector/rollups.py), of a chat measure (DEFINITIONS, VERSION in
projector/analytics.py) and of how an agent's measures are read from its fold state
(AGENT_DEFINITIONS). It does not refold the agents' online spells (copied as they are) nor
any fold state: a change of what the fold keeps (an agent's status spells included) needs
the full `parley projections rebuild --accept-changes`. Run it once the projector runs the
new code (docs/analytics.md, "Changing a definition")."""


class _RebuildTarget(argparse.Action):
    """The name ``rebuild`` is given; ``analytics`` (any case) needs no Kafka, so no local
    broker either (``local_kafka``, see :mod:`parley.cli`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        if isinstance(values, str) and values.lower() == "analytics":
            namespace.local_kafka = False


def _cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.topics import Topics
    from parley.kafka.clients import make_producer
    from parley.logs import setup_logging
    from parley.privacy.config import build_key_ring
    from projector.dlq import KafkaDeadLetters
    from projector.rebuild import rebuild
    from projector.rebuild_parallel import join_rebuild, rebuild_parallel
    from projector.store import projection_name
    from projector.stores import open_store

    if args.name is not None and args.name.lower() == "analytics":
        return _rebuild_analytics(args, settings)
    workers = _rebuild_workers(args, settings)
    setup_logging(settings.log_level, settings.all_secrets())
    topics = Topics(prefix=settings.kafka.topic_prefix)

    ring = build_key_ring(settings)  # a missing master key: one line, nothing started

    async def main() -> int:
        store = open_store(settings.store.url)
        await store.open()
        producer = make_producer(settings.kafka)
        try:
            await KafkaDeadLetters.ensure_topic(settings.kafka, topics)
            await producer.start()
            letters = KafkaDeadLetters(producer, topics)
            if args.join:
                dead = await join_rebuild(store, _parallel(settings, workers,
                                                           args.publish_states), args.name)
                print(f"joined the rebuild of {projection_name(args.name)}: every partition "
                      f"reached its target, {dead} dead-lettered by these workers")
                return 0
            if workers > 1:
                report = await rebuild_parallel(
                    store, _parallel(settings, workers, args.publish_states), name=args.name,
                    dead_letters=letters, accept_changes=args.accept_changes)
            else:
                report = await rebuild(store, settings.kafka, topics, name=args.name,
                                       dead_letters=letters, publish_states=args.publish_states,
                                       accept_changes=args.accept_changes, ring=ring)
        finally:
            await ring.close()
            await producer.stop()
            await store.close()
        rate = report.records / report.seconds if report.seconds > 0 else 0.0
        print(f"rebuilt {report.name}: {report.records} records in {report.seconds:.1f} s "
              f"({rate:.0f} records/s), {report.dead_letters} dead-lettered")
        return 0

    return loop.run(main(), settings.event_loop)


def _rebuild_workers(args: argparse.Namespace, settings: Settings) -> int:
    """The workers of ``rebuild``, once its arguments are found right (each wrong one is an
    error line, before anything connects: also the command's ``precheck``)."""
    from projector.rebuild import RebuildError
    from projector.store import projection_name

    if args.name is not None and args.name.lower() == "analytics":
        return 1  # checked by _rebuild_analytics, which needs no Kafka
    if args.name is not None:
        projection_name(args.name)
    workers = worker_count(args.workers, settings.store.url, join=args.join)
    if args.join and args.name is None:
        raise RebuildError("--join needs the copy's name, as the starting process printed it "
                           "(`parley projections rebuild NAME --workers N --join`)")
    return workers


def _rebuild_analytics(args: argparse.Namespace, settings: Settings) -> int:
    """``parley projections rebuild analytics``: no Kafka, no keys; the store only."""
    from parley.logs import setup_logging
    from projector.analytics_rebuild import rebuild_analytics
    from projector.rebuild import RebuildError
    from projector.stores import open_store

    given = [flag for flag, on in (("--publish-states", args.publish_states),
                                   ("--accept-changes", args.accept_changes),
                                   ("--workers", args.workers != "1"), ("--join", args.join)) if on]
    if given:
        raise RebuildError(f"{', '.join(given)} do not apply to `parley projections rebuild "
                           "analytics` (it rebuilds the live copy's roll-ups, no new copy); "
                           "nothing was changed")
    setup_logging(settings.log_level, settings.all_secrets())

    async def main() -> int:
        store = open_store(settings.store.url)
        await store.open()
        try:
            report = await rebuild_analytics(store)
        finally:
            await store.close()
        rate = report.walked / report.seconds if report.seconds > 0 else 0.0
        print(f"rebuilt the analytics of {report.name}: {report.walked} chats and agents in "
              f"{report.seconds:.1f} s ({rate:.0f}/s); the reports and views serve them now")
        return 0

    return loop.run(main(), settings.event_loop)


def worker_count(raw: str, store_url: str, *, join: bool = False) -> int:
    """``--workers``: a whole number, at least 1; more than 1 (or ``--join``) needs a store
    that several processes can open (not an in-memory one). RebuildError (one line) otherwise."""
    from projector.rebuild import RebuildError

    try:
        workers = int(raw)
    except ValueError:
        workers = 0
    if workers < 1:
        raise RebuildError(f"--workers must be a whole number of at least 1, not {raw!r}; "
                           "nothing was changed")
    if (workers > 1 or join) and (store_url.startswith("memory:") or ":memory:" in store_url):
        raise RebuildError("--workers above 1 or --join needs a store several processes can open "
                           "(SQLite file or PostgreSQL), not an in-memory one")
    return workers


def _parallel(settings: Settings, workers: int, publish_states: bool) -> ParallelOptions:
    """The :class:`~projector.rebuild_parallel.ParallelOptions` of ``--workers N``."""
    from projector.rebuild_parallel import ParallelOptions
    from projector.rebuild_worker import MemberOptions

    return ParallelOptions(workers=workers, store_url=settings.store.url, kafka=settings.kafka,
                           prefix=settings.kafka.topic_prefix,
                           member=MemberOptions(publish_states=publish_states),
                           # The coordinator prints the progress of all workers; theirs
                           # would interleave JSON lines into the command's output.
                           log_level=("DEBUG" if settings.log_level.upper() == "DEBUG"
                                      else "WARNING"),
                           secrets=tuple(settings.all_secrets()),
                           event_loop=settings.event_loop, key_settings=settings)


def _cmd_drop(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(asyncio.run(drop_projection(settings, args.name)))
    return 0


async def drop_projection(settings: Settings, name: str) -> str:
    """Delete the copy ``name`` (case ignored); refused (a clear error, nothing deleted) if it
    is the live one, does not exist or is not a valid name. Deleting a copy that a rebuild is
    still writing fails that rebuild."""
    from projector.errors import UnknownProjection
    from projector.store import projection_name
    from projector.stores import open_store

    name = projection_name(name)
    store = open_store(settings.store.url)
    await store.open()
    try:
        names = await store.list_projections()
        if name not in names:
            raise UnknownProjection(f"no projection copy named {name!r} "
                                    f"(copies: {', '.join(names) or 'none'})")
        await store.drop_projection(name)  # LiveProjectionDrop if it serves reads
        left = await store.list_projections()
    finally:
        await store.close()
    return f"dropped {name}; copies left: {', '.join(left) or 'none'}\n"


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(asyncio.run(projection_status(settings)))
    return 0


async def projection_status(settings: Settings) -> str:
    """Text report: each projection's name, live flag, row counts, offsets and lag, and the
    verification summary its rebuild kept (:mod:`projector.verify`).

    Lag is the partition's end offset minus the projection's stored next offset (the whole
    partition when the projection has none). Kafka being unreachable only hides the lag.
    """
    from contracts.topics import Topics
    from parley.kafka.clients import make_consumer
    from projector.analytics_rebuild import HasShadow
    from projector.rebuild import event_partitions
    from projector.stores import open_store
    from projector.verify import Verification, describe

    topics = Topics(prefix=settings.kafka.topic_prefix)
    store = open_store(settings.store.url)
    await store.open()
    try:
        live = await store.live_projection()
        names = await store.list_projections()
        details = {n: (await store.counts(n), await store.offsets(n)) for n in names}
        kept = await store.verifications()
        shadowed = await store.analytics_shadow().shadowed() if isinstance(store, HasShadow) else []
    finally:
        await store.close()
    ends: dict[tuple[str, int], int] = {}
    kafka_note = ""
    try:
        tps = await event_partitions(settings.kafka, topics)
        consumer = make_consumer(settings.kafka, group_id=None)
        await consumer.start()
        try:
            if tps:
                ends = {(tp.topic, tp.partition): off
                        for tp, off in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()
    except Exception as exc:  # noqa: BLE001 - status still shows what the store knows
        kafka_note = f"  (Kafka unreachable: {type(exc).__name__}; lag unknown)\n"
    lines: list[str] = []
    if not names:
        lines.append("no projections yet (the projector creates v1 when it starts)\n")
    for name in names:
        counts, offsets = details[name]
        total_lag = sum(max(0, end - offsets.get(tp, 0)) for tp, end in ends.items())
        flag = " (live)" if name == live else ""
        rows = " ".join(f"{kind}={n}" for kind, n in counts.items())
        lag = f"  lag {total_lag}" if ends else ""
        lines.append(f"projection {name}{flag}  rows: {rows}{lag}\n")
        lines.append(kafka_note)
        for tp in sorted(set(offsets) | set(ends)):
            stored = offsets.get(tp)
            end = ends.get(tp)
            part_lag = "?" if end is None else str(max(0, end - (stored or 0)))
            lines.append(f"  {tp[0]}[{tp[1]}]  offset {stored if stored is not None else '-'}"
                         f"  end {end if end is not None else '?'}  lag {part_lag}\n")
        if name in kept:
            lines.extend(f"  {line}\n" for line in describe(Verification.from_json(kept[name])))
        if name in shadowed:
            lines.append("  analytics: being rebuilt into shadow roll-ups, not live (if no "
                         "`parley projections rebuild analytics` runs, it was killed: run it "
                         "again, it starts afresh)\n")
    return "".join(lines)
