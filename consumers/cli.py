"""``parley consumers list|lag|reset|replay|rebuild`` and ``parley dlq NAME``.

``parley dlq`` serves every group's dead-letter topic, the projector's included;
``parley consumers dlq`` is the same command under its first name.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from consumers.errors import ConsumerError
from consumers.registry import consumer_config, known_consumers, load_consumer
from contracts.dead_letter import DeadLetterEntry
from contracts.topics import EVENT_TOPIC_KINDS, PROJECTOR, Topics
from parley.errors import SettingsError
from parley.kafka.retry import retrying
from parley.settings import Settings

if TYPE_CHECKING:
    from consumers.replay import ReplayFilter

__all__ = ["dead_letter_groups", "register"]


def dead_letter_groups(settings: Settings) -> list[str]:
    """Consumers whose dead-letter topics ``parley topics apply`` creates: the built-in and
    entry-point ones, and those with a ``[consumers.NAME]`` table in the configuration."""
    return [k.name for k in known_consumers()] + list(settings.consumers)


def register(sub: Any) -> None:
    """Add the consumer groups' administration commands to the top-level ``parley`` parser
    (``parley consumer NAME``, the process, is defined with the other processes in
    :mod:`parley.cli`)."""
    many = sub.add_parser("consumers", help="consumer group administration")
    msub = many.add_subparsers(dest="consumers_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="known consumers and their groups").set_defaults(
        handler=_cmd_list)
    lag = msub.add_parser("lag", help="lag per partition, in records and event-time seconds")
    lag.add_argument("names", nargs="*", help="consumers (default: every known one that is "
                                              "configured here or has committed offsets)")
    lag.add_argument("--json", action="store_true", help="print JSON")
    lag.set_defaults(handler=_cmd_lag, local_kafka=True)
    reset = msub.add_parser("reset", help="move an idle group's offsets")
    reset.add_argument("name")
    reset.add_argument("--to", required=True, metavar="earliest|latest|TIME",
                       help="earliest, latest, or an ISO-8601 time (the record's receive time)")
    reset.set_defaults(handler=_cmd_reset, precheck=_reset_target, local_kafka=True)
    replay = msub.add_parser("replay", help="re-deliver chosen events to one running group")
    replay.add_argument("name", help="the consumer (built-in, entry-point name, or "
                                     "module:attribute)")
    replay.add_argument("--source", help="only events of this configured source")
    replay.add_argument("--chat", metavar="ID", help="only this chat's records")
    replay.add_argument("--type", help="only this event type as the provider sent it (on "
                                       "state topics: the change's kind)")
    replay.add_argument("--from", dest="start", metavar="TIME",
                        help="from this ISO-8601 time (the record's receive time)")
    replay.add_argument("--to", dest="end", metavar="TIME", help="up to this time (excluded)")
    replay.add_argument("--dry-run", action="store_true", help="only count what would go")
    replay.set_defaults(handler=_cmd_replay, precheck=_replay_filter, local_kafka=True)
    rebuild = msub.add_parser("rebuild", help="rebuild a consumer's state (the search index) "
                                               "into a shadow copy, then switch to it")
    rebuild.add_argument("name", help="a consumer that keeps rebuildable state (search)")
    rebuild.set_defaults(handler=_cmd_rebuild, local_kafka=True)
    _dlq_arguments(msub.add_parser("dlq", help="the same as `parley dlq`"))
    _dlq_arguments(sub.add_parser("dlq", help="a group's dead letters and parked keys (every "
                                              "group, the projector included)"))


def _dlq_arguments(dlq: argparse.ArgumentParser) -> None:
    dlq.add_argument("name", help=f"the group: {PROJECTOR}, or a consumer (built-in, "
                                  "entry-point name, or module:attribute)")
    dlq.add_argument("action", choices=("list", "replay", "skip"))
    dlq.add_argument("--key", help="only this record key (chat, visitor or agent id)")
    dlq.add_argument("--topic", choices=EVENT_TOPIC_KINDS, help="only this aggregate's topic")
    dlq.set_defaults(handler=_cmd_dlq, local_kafka=True)


def _resolve(name: str, settings: Settings, *, guess: bool = True) -> tuple[str, list[str]]:
    """A consumer's name (NAME may be ``module:attr``) and the topics its group reads.

    A consumer that cannot be loaded here is found by its group's committed offsets; failing
    that, with ``guess``, a known name is taken to read every event topic; else its error.
    """
    from consumers.groups import committed_topics

    topics = Topics(prefix=settings.kafka.topic_prefix)
    try:
        c = load_consumer(name, settings)
    except (ConsumerError, SettingsError):
        if ":" in name:
            raise
        # Known but not loadable here (unconfigured), or code this CLI cannot import: the
        # group's own committed offsets say which topics it reads.
        group = Topics(prefix=settings.kafka.topic_prefix).group_id(name)
        # Its replay topic is not one of its topics: lag and reset leave it alone.
        found = [t for t in asyncio.run(retrying(lambda: committed_topics(settings.kafka, group)))
                 if t != topics.replay(name)]
        if found:
            return name, found
        if guess and name in {k.name for k in known_consumers()}:
            return name, list(topics.event_topics)
        raise
    return c.name, list(c.topic_names(topics))


def _every_group(settings: Settings) -> list[tuple[str, list[str]]]:
    """Each known consumer that can run here, or whose group has committed offsets; the
    rest (a built-in with no configuration, such as ``crm``) are skipped with a note."""
    out: list[tuple[str, list[str]]] = []
    for known in known_consumers():
        try:
            out.append(_resolve(known.name, settings, guess=False))
        except (ConsumerError, SettingsError) as exc:
            why = (f"not configured here: no [consumers.{known.name}] table"
                   if isinstance(exc, SettingsError) and not consumer_config(settings, known.name)
                   else str(exc))
            print(f"parley: note: {known.name} skipped ({why}; its group has no committed "
                  "offsets)", file=sys.stderr)
    return out


def _name(name: str, settings: Settings) -> str:
    return load_consumer(name, settings).name if ":" in name else name


def _describe(e: DeadLetterEntry) -> str:
    """One ``parley dlq NAME list`` line."""
    if e.kind == "parked":
        what = "parked behind its key's dead letter"
    else:
        when = "" if e.at is None else f" last {e.at:%Y-%m-%dT%H:%M:%SZ}"
        if e.first_failed_at is not None and e.first_failed_at != e.at:
            when = f" first {e.first_failed_at:%Y-%m-%dT%H:%M:%SZ}{when}"
        what = (f"{e.reason or '-'} {e.error_type}: {e.error} after {e.attempts} attempt(s)"
                f"{when}{'' if e.projection is None else ' projection ' + e.projection}")
    return (f"{e.dlq_offset:>6} {e.kind:<6} key={e.key} origin={e.origin} "
            f"event={e.event_id or '-'} {what}")


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    topics = Topics(prefix=settings.kafka.topic_prefix)
    for k in known_consumers():
        print(f"{k.name:<16} group {topics.group_id(k.name):<32} dlq {topics.dlq(k.name):<28} "
              f"({k.origin}: {k.ref})")
    return 0


def _cmd_lag(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.lag import LagMonitor, WatchedGroup

    resolved = [_resolve(ref, settings) for ref in args.names] if args.names \
        else _every_group(settings)
    topics = Topics(prefix=settings.kafka.topic_prefix)
    watched = [WatchedGroup(name, topics.group_id(name), tuple(topic_names))
               for name, topic_names in resolved]

    async def main() -> list[Any]:
        monitor = LagMonitor(settings.kafka, watched)
        await monitor.start()
        try:
            return await retrying(monitor.refresh)
        finally:
            await monitor.close()

    groups = asyncio.run(main())
    if args.json:
        print(msgspec.json.encode(groups).decode())
        return 0
    print(f"{'consumer':<12} {'topic':<28} {'part':>4} {'committed':>10} {'end':>10} "
          f"{'lag':>8} {'lag_s':>10}")
    for g in groups:
        for p in g.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            print(f"{g.consumer:<12} {p.topic:<28} {p.partition:>4} {committed:>10} {p.end:>10} "
                  f"{p.lag_records:>8} {p.lag_seconds:>10.1f}")
    return 0


def _reset_target(args: argparse.Namespace, settings: Settings) -> str | datetime:
    """``reset --to``'s target; a bad one is an error line before anything connects (also
    the command's ``precheck``)."""
    from consumers.groups import parse_reset_target

    return parse_reset_target(args.to)


def _cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.groups import reset_group

    target = _reset_target(args, settings)
    name, topic_names = _resolve(args.name, settings)
    group = Topics(prefix=settings.kafka.topic_prefix).group_id(name)
    offsets = asyncio.run(reset_group(settings.kafka, group, topic_names, target))
    for tp, offset in sorted(offsets.items()):
        print(f"{group} {tp.topic}:{tp.partition} -> {offset}")
    return 0


def _replay_target(ref: str, settings: Settings) -> tuple[str, list[str]]:
    """Consumer ``ref``'s name and the topics its group reads, for a group that exists in
    Kafka (has committed offsets or members); ConsumerError for any other."""
    from consumers.groups import active_members, committed_topics

    topics = Topics(prefix=settings.kafka.topic_prefix)
    try:
        c = load_consumer(ref, settings)
        name, topic_names = c.name, list(c.topic_names(topics))
    except (ConsumerError, SettingsError):
        if ":" in ref:
            raise
        name, topic_names = ref, []
    try:
        group, replay_topic = topics.group_id(name), topics.replay(name)
    except ValueError as exc:
        raise ConsumerError(f"unknown consumer group {name!r}: {exc}") from None
    found = [t for t in asyncio.run(retrying(lambda: committed_topics(settings.kafka, group)))
             if t != replay_topic]
    if not found and not asyncio.run(retrying(lambda: active_members(settings.kafka, group))):
        raise ConsumerError(f"unknown consumer group {group}: it has no members and no "
                            f"committed offsets; replay goes to a group that has run "
                            f"(`parley consumers list`, `parley consumers lag`)")
    return name, topic_names or found


def _replay_filter(args: argparse.Namespace, settings: Settings) -> ReplayFilter:
    """``replay``'s filter; a bad time is an error line before anything connects (also the
    command's ``precheck``)."""
    from consumers.replay import ReplayFilter, parse_time

    return ReplayFilter(source=args.source, chat=args.chat, type=args.type,
                        start=parse_time(args.start, "--from") if args.start else None,
                        end=parse_time(args.end, "--to") if args.end else None)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.replay import ReplayProgress, scan_and_send

    f = _replay_filter(args, settings)
    name, topic_names = _replay_target(args.name, settings)
    topics = Topics(prefix=settings.kafka.topic_prefix)
    group = topics.group_id(name)

    def report(p: ReplayProgress) -> None:
        print(f"parley: replay {name}: {p.line()}", file=sys.stderr, flush=True)

    p = asyncio.run(scan_and_send(settings.kafka, topics, name, topic_names, f,
                                  dry_run=args.dry_run, report=report))
    report(p)
    if not p.matched:
        print(f"no record matches the filter ({p.scanned} scanned in "
              f"{', '.join(topic_names)}); nothing sent")
    elif args.dry_run:
        print(f"would replay {p.matched} event(s) to group {group} ({p.scanned} scanned); "
              "dry run, nothing sent")
    else:
        print(f"replayed {p.sent} event(s) to group {group} through {topics.replay(name)} "
              f"({p.scanned} scanned in {p.elapsed_s:.1f} s)")
    return 0


def _require_known_group(name: str, topics: Topics, settings: Settings) -> None:
    """Refuse a group Parley knows nothing of (a typo), before anything is created for it:
    known means the projector, a built-in or installed consumer, a group with members or
    committed offsets, or a dead-letter topic already there."""
    from consumers.groups import group_known

    if name == PROJECTOR or name in dead_letter_groups(settings):
        return
    try:
        group, dlq = topics.group_id(name), topics.dlq(name)
    except ValueError as exc:
        raise ConsumerError(f"unknown consumer group {name!r}: {exc}") from None
    if asyncio.run(retrying(lambda: group_known(settings.kafka, group, dlq))):
        return
    raise ConsumerError(f"unknown consumer group {group}: not a known consumer, no members, "
                        f"no committed offsets and no dead-letter topic {dlq} "
                        f"(`parley consumers list` names the known ones)")


def _cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.dlq_ops import dlq_entries, dlq_replay, dlq_skip

    topics = Topics(prefix=settings.kafka.topic_prefix)
    topic = topics.for_aggregate(args.topic) if args.topic else None
    k = settings.kafka
    name = _name(args.name, settings)
    _require_known_group(name, topics, settings)
    if args.action == "list":
        entries = asyncio.run(dlq_entries(k, topics, name, key=args.key, topic=topic))
        for e in entries:
            print(_describe(e))
        keys = {(e.origin.topic, e.key) for e in entries}
        print(f"{len(entries)} unresolved entr{'y' if len(entries) == 1 else 'ies'}, "
              f"{len(keys)} parked key(s)", file=sys.stderr)
        return 0
    if args.action == "skip":
        n = asyncio.run(dlq_skip(k, topics, name, key=args.key, topic=topic))
        print(f"skipped {n} entr{'y' if n == 1 else 'ies'}; their keys flow again")
        return 0
    if name == PROJECTOR:
        # The projector skips a bad record and carries on (it never parks a key): its replay
        # is a rebuild, which reads every record again.
        raise ConsumerError(
            "the projector's dead letters are replayed by a rebuild: fix the fold, run "
            "`parley dlq projector skip`, then `parley projections rebuild` (records that "
            "still fail are dead-lettered again)")
    consumer = load_consumer(args.name, settings)
    report = asyncio.run(dlq_replay(k, topics, consumer, key=args.key, topic=topic))
    print(f"replayed {report.replayed} event(s) in {report.rounds} round(s)")
    for e, error in report.failed:
        print(f"still failing: key={e.key} origin={e.origin} {error}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.rebuild import rebuild_consumer
    from parley.privacy.config import build_key_ring

    consumer = load_consumer(args.name, settings)
    if consumer.rebuildable is None:  # refused before anything is opened or changed
        raise ConsumerError(f"consumer {consumer.name!r} keeps no state Parley can rebuild; "
                            "only a consumer with a rebuildable state (search) can be")
    topics = Topics(prefix=settings.kafka.topic_prefix)
    ring = build_key_ring(settings)  # a missing master key: one line, nothing changed

    async def main() -> Any:
        if consumer.start is not None:
            await consumer.start()
        try:
            return await rebuild_consumer(consumer, settings.kafka, topics, ring=ring)
        finally:
            await ring.close()
            if consumer.stop is not None:
                await consumer.stop()

    r = asyncio.run(main())
    rate = r.records / r.seconds if r.seconds > 0 else 0.0
    print(f"rebuilt {consumer.name} {r.copy}: {r.records} records in {r.seconds:.1f} s "
          f"({rate:,.0f} records/s); live copy {r.previous} -> {r.copy}")
    return 0
