"""``parley kafka tool NAME ARGS…``: Kafka's own command-line tools, without a Kafka download.

The tools (``kafka-consumer-groups``, ``kafka-console-consumer``, ``kafka-topics``, …) are
resolved with the broker (``pom.xml``), so this runs them with the machine's Java on the same
classpath, as Kafka's ``bin/kafka-*.sh`` scripts do. When the arguments name no
``--bootstrap-server``, the configured ``kafka.bootstrap`` (else the local cluster of
``parley kafka up`` / ``parley run``) is passed, so ``parley kafka tool consumer-groups --list``
is enough. Secured clusters need the tool's own client configuration
(``--command-config FILE``), exactly as with Kafka's scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from parley.errors import SettingsError
from parley.kafka.jars import require_tool, resolve_jars

__all__ = ["TOOLS", "Tool", "tool_command"]


class Tool(msgspec.Struct, frozen=True):
    """One of Kafka's command-line tools: its main class, and whether it takes
    ``--bootstrap-server`` before its other arguments (``parley kafka tool`` adds it)."""

    main_class: str
    bootstrap: bool = True


_T = "org.apache.kafka.tools."
#: Kafka's ``bin/kafka-<name>.sh`` scripts of the tools in the resolved jars (Kafka 4.x names).
TOOLS: dict[str, Tool] = {
    "acls": Tool(_T + "AclCommand"),
    "broker-api-versions": Tool(_T + "BrokerApiVersionsCommand"),
    "configs": Tool("kafka.admin.ConfigCommand"),
    "console-consumer": Tool(_T + "consumer.ConsoleConsumer"),
    "console-producer": Tool(_T + "ConsoleProducer"),
    "consumer-groups": Tool(_T + "consumer.group.ConsumerGroupCommand"),
    "delete-records": Tool(_T + "DeleteRecordsCommand"),
    "dump-log": Tool(_T + "DumpLogSegments", bootstrap=False),
    "get-offsets": Tool(_T + "GetOffsetShell"),
    "groups": Tool(_T + "GroupsCommand"),
    "leader-election": Tool(_T + "LeaderElectionCommand"),
    "log-dirs": Tool(_T + "LogDirsCommand"),
    "metadata-quorum": Tool(_T + "MetadataQuorumCommand"),
    "reassign-partitions": Tool(_T + "reassign.ReassignPartitionsCommand"),
    "topics": Tool(_T + "TopicCommand"),
    "transactions": Tool(_T + "TransactionsCommand"),
}
# The scripts' own JVM options for tools (bin/kafka-run-class.sh): a small heap.
_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
_SERVER_FLAGS = ("--bootstrap-server", "--bootstrap-controller")
# Package data beside this module (setuptools installs it as a plain file, never zipped).
_LOG4J = Path(__file__).with_name("tools-log4j2.properties")


def _lookup(name: str) -> Tool:
    # Accept the script's own spelling too: kafka-consumer-groups, kafka-consumer-groups.sh.
    key = name.removesuffix(".sh").removeprefix("kafka-")
    tool = TOOLS.get(key)
    if tool is None:
        raise SettingsError(f"no Kafka tool {name!r}; known: {', '.join(TOOLS)}")
    return tool


def tool_command(name: str, args: Sequence[str], bootstrap: str | None) -> list[str]:
    """The ``java`` command line that runs tool ``name`` with ``args``.

    ``bootstrap`` is put first as ``--bootstrap-server`` unless ``args`` name a server
    themselves or the tool takes none. Raises :class:`~parley.errors.SettingsError` for an
    unknown tool, or when the tool needs a server and none is known.
    """
    tool = _lookup(name)
    java = require_tool("java", "run Kafka's tools")
    libs = resolve_jars()
    server: list[str] = []
    named = any(a in _SERVER_FLAGS or a.startswith(tuple(f + "=" for f in _SERVER_FLAGS))
                for a in args)
    if tool.bootstrap and not named and "--help" not in args:
        if not bootstrap:
            raise SettingsError("no Kafka to talk to: set kafka.bootstrap, start one with "
                                "`parley kafka up`, or pass --bootstrap-server HOST:PORT")
        server = ["--bootstrap-server", bootstrap]
    return [java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={_LOG4J}", "-cp", f"{libs}/*",
            tool.main_class, *server, *args]
