"""The ``parley`` command line. Every command takes ``--config FILE`` (or ``$PARLEY_CONFIG``,
else ``./parley.toml`` when there is one).

This is the composition root: it registers every sub-command with plain imports. The
commands that run a long-lived process (``run``, ``projector``, ``consumer``, ``receiver``)
are defined here and each builds its roles and serves them through :mod:`parley.process`;
the role packages and :mod:`parley.store_cli` add their administration commands through a
``register(subparsers)`` function. ``parley topics apply`` creates the dead-letter topics of
the groups their ``dead_letter_groups(settings)`` functions name.
A command that talks to Kafka sets ``local_kafka=True`` among its parser defaults: when
``kafka.bootstrap`` is unset, it then runs against the local broker of ``data_dir``
(:func:`parley.kafka.local.bootstrap_for`), recorded as one of its users while it runs, or
stops with one line saying that none runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiokafka.errors import KafkaError

from consumers import cli as consumers_cli
from parley import keys_cli, loop, store_cli
from parley.errors import ParleyError, SettingsError
from parley.settings import Settings, load_settings
from projector import cli as projector_cli
from projector import visitors_cli

Handler = Callable[[argparse.Namespace, Settings], int]
#: A command's checks of its own arguments (``set_defaults(precheck=…)``; not ``check``,
#: which ``store migrate --check`` is), run before a local broker is looked for: bad input is
#: its one error line, not "no broker runs".
Check = Callable[[argparse.Namespace, Settings], object]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley", description="Parley: live-chat webhooks on Kafka, folded into queryable state. "
        "Every command takes --config FILE (else $PARLEY_CONFIG, else ./parley.toml when there is one).")
    parser.add_argument("--config", help="TOML configuration file (default: $PARLEY_CONFIG, "
                                          "else ./parley.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="everything on one machine (local Kafka if none configured)")
    run.set_defaults(handler=_cmd_run)

    kafka = sub.add_parser("kafka", help="local KRaft broker(s) of real Apache Kafka")
    ksub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    up = ksub.add_parser("up", help="start local broker(s); returns once they answer")
    up.add_argument("--brokers", type=int, default=1, help="number of nodes (default 1)")
    up.add_argument("--port", type=_whole(1, 64535), default=None,  # controllers: +1000
                    help="first broker port (default: kafka.local_port, 9092)")
    up.add_argument("--heap-mb", type=_whole(64, 1 << 20), default=512,
                    help="JVM heap per node (default 512)")
    up.set_defaults(handler=_cmd_kafka_up)
    down = ksub.add_parser("down", help="stop the local broker (refused while a process uses it)")
    down.add_argument("--wipe", action="store_true", help="also delete their data")
    down.add_argument("--force", action="store_true",
                      help="stop it even while a `parley run` or another command uses it")
    down.set_defaults(handler=_cmd_kafka_down)
    ksub.add_parser("status", help="what runs where").set_defaults(handler=_cmd_kafka_status)
    tool = ksub.add_parser("tool", help="run one of Kafka's own tools (consumer-groups, "
                                        "console-consumer, topics, …) with the resolved jars")
    tool.add_argument("--print", action="store_true", dest="print_only",
                      help="print the java command line instead of running it")
    tool.add_argument("name", metavar="NAME", help="the tool: " + ", ".join(_tool_names()))
    tool.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="the tool's own arguments (--bootstrap-server is added if missing)")
    tool.set_defaults(handler=_cmd_kafka_tool)

    topics = sub.add_parser("topics", help="topic administration")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    apply = tsub.add_parser("apply", help="create or update the event and dead-letter topics "
                                          "from their specs (idempotent)")
    apply.add_argument("--consumer", action="append", default=[], metavar="NAME",
                       help="also the dead-letter topic of consumer NAME (repeatable); built-in, "
                            "entry-point and [consumers.NAME] consumers are included anyway")
    apply.add_argument("--allow-repartition", action="store_true",
                       help="raise the partitions of existing topics to kafka.partitions (moves "
                            "keys to other partitions: see docs/operations.md, \"Topics\", for "
                            "what to do before and after)")
    apply.set_defaults(handler=_cmd_topics_apply, local_kafka=True)

    # In this order: `parley --help` lists the commands so (README.md's command table).
    _register_projector(sub)
    projector_cli.register(sub)
    store_cli.register(sub)
    keys_cli.register(sub)
    _register_consumer(sub)
    consumers_cli.register(sub)
    visitors_cli.register(sub)
    _register_receiver(sub)
    return parser


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, else argparse's one-line
    error naming the flag (a port past 65535 was a traceback from ``bind()``)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, not {raw!r}")
        return value

    return parse


def _hoist_config(argv: Sequence[str]) -> list[str]:
    """Accept ``--config FILE`` anywhere on the line, not only before the sub-command.

    A Kafka tool's own arguments (after ``kafka tool NAME``) are passed on untouched:
    ``kafka-topics`` has a ``--config`` of its own.
    """
    rest: list[str] = []
    config: list[str] = []
    it = iter(argv)
    for arg in it:
        if _is_tool_name(rest, arg):
            rest += [arg, *it]
            break
        if arg == "--config":
            config = ["--config", next(it, "")]
        elif arg.startswith("--config="):
            config = ["--config", arg.split("=", 1)[1]]
        else:
            rest.append(arg)
    return config + rest


def _is_tool_name(before: list[str], arg: str) -> bool:
    """Whether ``arg`` is the NAME of ``kafka tool [--print] NAME``."""
    words = [w for w in before if w != "--print"]
    return words[-2:] == ["kafka", "tool"] and not arg.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_hoist_config(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings(args.config, cwd=Path.cwd())
        handler: Handler = args.handler
        precheck: Check | None = getattr(args, "precheck", None)
        if precheck is not None:
            precheck(args, settings)
        if getattr(args, "local_kafka", False) and not settings.kafka.bootstrap:
            from parley.kafka.local import LocalBroker, bootstrap_for

            settings = bootstrap_for(settings)
            with LocalBroker(settings).use(_command_name(args)):
                return _flushed(handler(args, settings))
        return _flushed(handler(args, settings))
    except BrokenPipeError:
        # The reader went away (`parley consumers lag --json | head`): nothing more to say,
        # and nothing for Python to fail to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ParleyError as exc:
        print(f"parley: error: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        # Raised by a command's Kafka call: one line, not a traceback.
        print(f"parley: error: Kafka: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _flushed(code: int) -> int:
    """``code``, once what the command printed has left (a closed pipe raises here)."""
    sys.stdout.flush()
    return code


def _command_name(args: argparse.Namespace) -> str:
    """``parley consumers lag``: the command and its action, for the broker's user records."""
    action = getattr(args, f"{args.command}_command", None)
    return " ".join(["parley", args.command, *([action] if action else [])])


# ----------------------------------------------------------------------------- kafka
def _cmd_kafka_up(args: argparse.Namespace, settings: Settings) -> int:
    from parley.kafka.local import LocalBroker, local_kafka

    broker = LocalBroker(settings, local_kafka(settings, args.brokers, args.port, args.heap_mb))
    print(f"starting {args.brokers} Kafka node(s) (Apache Kafka, KRaft) in {broker.root} …",
          file=sys.stderr)
    state, note = broker.up()
    print(f"Kafka {state.kafka_version} ready: bootstrap {state.bootstrap}{note}")
    return 0


def _cmd_kafka_down(args: argparse.Namespace, settings: Settings) -> int:
    from parley.kafka.local import LocalBroker

    print(LocalBroker(settings).down(wipe=args.wipe, force=args.force))
    return 0


def _cmd_kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    from parley.kafka.local import RUN, LocalBroker

    broker = LocalBroker(settings)
    nodes = broker.kafka.status()
    if not any(n.running for n in nodes):
        raise broker.not_running()
    for n in nodes:
        state = f"running (pid {n.pid})" if n.running else "stopped"
        print(f"node {n.node_id}: 127.0.0.1:{n.port} {state}  log {n.log}")
    owner = broker.owner()
    if owner is not None:
        until = ("the last process using it exits" if owner.command == RUN
                 else "`parley kafka down`")
        print(f"started by {owner.describe()}; runs until {until}")
    users = broker.users()
    print("used by: " + (", ".join(u.describe() for u in users) or "no process"))
    return 0 if all(n.running for n in nodes) else 1


def _tool_names() -> list[str]:
    from parley.kafka.tools import TOOLS

    return list(TOOLS)


def _cmd_kafka_tool(args: argparse.Namespace, settings: Settings) -> int:
    from parley.kafka.local import LocalBroker
    from parley.kafka.tools import tool_command

    # Unset: the local broker of data_dir if one runs (some tools, kafka-storage, need none).
    bootstrap = settings.kafka.bootstrap or LocalBroker(settings).running_bootstrap()
    cmd = tool_command(args.name, args.args, bootstrap)
    if args.print_only:
        print(subprocess.list2cmdline(cmd))
        return 0
    return subprocess.run(cmd, check=False).returncode  # noqa: S603 - our java, the user's args


# ---------------------------------------------------------------------------- topics
def dead_letter_groups(settings: Settings, named: Sequence[str] = ()) -> list[str]:
    """Groups whose dead-letter topics ``parley topics apply`` creates: those the role packages
    know (the projector, built-in and entry-point consumers, ``[consumers.NAME]`` tables) and
    ``named``."""
    groups = set(named)
    groups.update(projector_cli.dead_letter_groups(settings))
    groups.update(consumers_cli.dead_letter_groups(settings))
    return sorted(groups)


def _cmd_topics_apply(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.topics import Topics
    from parley.kafka.topics import apply_topics

    topics = Topics(prefix=settings.kafka.topic_prefix)
    try:
        dlqs = [topics.dlq_spec(g) for g in dead_letter_groups(settings, args.consumer)]
    except ValueError as exc:  # a --consumer name Kafka cannot put in a topic name
        raise SettingsError(str(exc)) from None
    report = asyncio.run(apply_topics(settings.kafka,
                                      [*topics.specs(settings.kafka.partitions),
                                       *topics.ops_specs(), topics.erasures_spec(), *dlqs],
                                      allow_repartition=args.allow_repartition))
    print(report.summary())
    for c in report.changes:
        print(f"{c.topic}: {c.action}{' (' + c.detail + ')' if c.detail else ''}")
    for warning in report.warnings():
        print(f"parley: warning: {warning}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------- processes
def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from parley.run import run_all

    return loop.run(run_all(settings), settings.event_loop)


def _register_projector(sub: Any) -> None:
    proj = sub.add_parser("projector", help="run the projector and query API only")
    # Defaults live in ProjectorRunnerOptions (not imported here: every `parley` command loads this).
    proj.add_argument("--max-batch", type=int, default=None,
                      help="most records folded per store transaction (default 5000)")
    proj.add_argument("--group", default=None,
                      help="Kafka consumer group (default <topic_prefix>.projector)")
    proj.set_defaults(handler=_cmd_projector, local_kafka=True)


def _cmd_projector(args: argparse.Namespace, settings: Settings) -> int:
    from parley.process import run_roles
    from projector.role import ProjectorRole, ProjectorRoleOptions
    from projector.runner import ProjectorRunnerOptions

    defaults = ProjectorRunnerOptions()
    if args.max_batch is not None and args.max_batch < 1:
        raise SystemExit("parley projector: --max-batch must be at least 1")
    options = ProjectorRoleOptions(runner=ProjectorRunnerOptions(
        max_records=args.max_batch or defaults.max_records, group_id=args.group or defaults.group_id))
    return run_roles(settings, lambda rt: [ProjectorRole(rt, options)])


def _register_consumer(sub: Any) -> None:
    one = sub.add_parser("consumer", help="run one consumer group (serves /healthz, /readyz, "
                                          "/metrics, /api/consumers)")
    one.add_argument("name", help="built-in (search, crm), entry-point name, or module:attribute")
    one.add_argument("--port", type=_whole(1, 65535),
                     help="HTTP port (default: http.port, or the next free port above it when "
                          "that one is taken)")
    one.set_defaults(handler=_cmd_consumer, local_kafka=True)


def _cmd_consumer(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.role import ConsumerRole
    from parley.process import run_roles

    if args.port is not None:
        settings = msgspec.structs.replace(
            settings, http=msgspec.structs.replace(settings.http, port=args.port))
    # The configuration file is often the one `parley run` uses too, so its http.port is not
    # this process's own choice: only --port is (docs/consumers.md, "Ports").
    return run_roles(settings, lambda rt: [ConsumerRole(rt, args.name)],
                     next_free_port=args.port is None)


def _register_receiver(sub: Any) -> None:
    receiver = sub.add_parser("receiver",
                              help="serve POST /webhooks/{source} (needs kafka.bootstrap)")
    receiver.set_defaults(handler=_cmd_receiver)


def _cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from parley.process import run_roles
    from receiver.role import ReceiverRole

    if not settings.kafka.bootstrap:
        raise SettingsError("parley receiver needs kafka.bootstrap (set it in the config file "
                            "or PARLEY_KAFKA__BOOTSTRAP; only `parley run` starts a local broker)")
    if not settings.sources:
        raise SettingsError("no [sources.NAME] configured: the receiver would reject everything")
    return run_roles(settings, lambda rt: [ReceiverRole(rt)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
