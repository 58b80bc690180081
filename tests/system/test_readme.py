"""README.md is executed: its quick start read top to bottom, the consumer-group and Kafka-tool
examples next to `make run`, and every command of its command table, in a directory laid out
like a fresh clone (clean data directory, real broker, real HTTP).

Two things differ from a person at a terminal, both on purpose: the ports (8080 and 9092 in the
README) are free ones, set through PARLEY_HTTP__PORT and PARLEY_KAFKA__LOCAL_PORT so the test
runs beside anything; and `make test` itself is not run again from inside `make test`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley.cli import build_parser
from parley.kafka.launcher import free_port_block, free_ports
from tests.kit.readme import (
    README,
    Background,
    Step,
    clean_env,
    command_table,
    command_words,
    console_steps,
    fresh_clone,
    http_status,
    matches,
    run,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

QUICK_START = ("Quick start", "Post a webhook, read the chat back")
NEXT_TO_MAKE_RUN = ("Add a consumer group", "Inspect topics and groups")
SEED = "tests/fixtures/webhooks/natterly/chat_initiated_seed.json"
SERVER = re.compile(r"(^|\s)(make run|\S*parley (run|consumer|receiver|projector))(\s|$)")


class Site:
    """The clone, its environment and its servers."""

    def __init__(self, tmp_path: Path) -> None:
        self.clone = fresh_clone(tmp_path / "clone")
        [self.http_port, self.port_2, self.port_3] = free_ports(3)
        self.kafka_port = free_port_block(1)
        self.env = clean_env(PARLEY_HTTP__PORT=str(self.http_port),
                             PARLEY_KAFKA__LOCAL_PORT=str(self.kafka_port),
                             MESSAGE_COUNTS_DB=str(tmp_path / "message_counts.db"))
        self.logs = tmp_path
        self.servers: list[Background] = []
        self.started = 0

    def localise(self, text: str) -> str:
        return (text.replace(":8080", f":{self.http_port}")
                .replace("127.0.0.1:9092", f"127.0.0.1:{self.kafka_port}"))

    def start(self, command: str, ready: str, **env: str) -> Background:
        self.started += 1
        server = Background.start(self.localise(command), self.clone, self.env | env,
                                  self.logs / f"server-{self.started}.log")
        self.servers.append(server)
        server.wait_for(ready)
        return server

    def stop(self, server: Background) -> None:
        """Ctrl-C; `make` itself dies of the SIGINT (-2 / 130) once its recipe exited."""
        assert server.interrupt() in (0, 130, -2), server.output()[-4000:]
        self.servers.remove(server)
        text = server.output()
        assert "Traceback" not in text and "Unclosed" not in text, text[-4000:]

    def parley(self, args: str, **env: str) -> tuple[int, str]:
        return run(f".venv/bin/parley {args}", self.clone, self.env | env)

    def get(self, path: str, port: int | None = None) -> int | None:
        return http_status(f"http://127.0.0.1:{port or self.http_port}{path}")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        for server in reversed(s.servers):
            server.interrupt()
        run(".venv/bin/parley kafka down --force", s.clone, s.env)  # whatever a failure left


def steps_of(*sections: str) -> list[Step]:
    steps = [step for step in console_steps(README.read_text()) if step.section in sections]
    assert {step.section for step in steps} == set(sections), "a README section lost its example"
    return steps


def play(site: Site, steps: list[Step]) -> None:
    """Each step as a person would: servers started (a new `make run` after Ctrl-C of the old),
    commands run, their output compared with what the README shows."""
    for step in steps:
        command = site.localise(step.command)
        if command.startswith("make test"):
            continue  # this test runs inside `make test`
        if SERVER.search(command):
            for server in [s for s in site.servers if "make run" in s.command and "make run" in command]:
                site.stop(server)
            ready = "consumer started" if "consumer" in command else '"msg":"listening"'
            server = site.start(command, ready)
            if "make run" in command:  # the user waits for the start-up lines
                server.wait_until(lambda: site.get("/readyz") == 200, "ready")
            continue
        code, output = run(command, site.clone, site.env)
        shown = [site.localise(line) for line in step.shown]
        assert code == 0, f"README command {step.command!r} failed ({code}):\n{output}"
        assert matches(shown, output), (
            f"README command {step.command!r} shows:\n" + "\n".join(shown) + f"\nbut printed:\n{output}")


def test_every_output_the_readme_shows_is_checked() -> None:
    """Output shown anywhere in the README is output a test compares: only the played sections
    show any (the other examples, e.g. resetting a group, are covered by the table's rows)."""
    unchecked = [step.command for step in console_steps(README.read_text())
                 if step.shown and step.section not in (*QUICK_START, *NEXT_TO_MAKE_RUN)]
    assert not unchecked, f"README shows output no test checks, for: {unchecked}"


def test_the_readme_runs_as_written(site: Site) -> None:
    play(site, steps_of(*QUICK_START))
    assert (site.clone / "parley.toml").is_file()
    [make_run] = site.servers
    assert "configuration file " + str(site.clone / "parley.toml") in make_run.output()

    play(site, steps_of(*NEXT_TO_MAKE_RUN))
    [consumer] = [s for s in site.servers if "consumer" in s.command]

    def caught_up() -> bool:
        code, lag = site.parley("consumers lag message-counts")
        return code == 0 and re.search(r"parley\.events\.chat\s+5\s+1\s+1\s+0\s", lag) is not None

    consumer.wait_until(caught_up, "message-counts caught up (lag 0 at chat[5] offset 1)")

    done = exercise_the_command_table(site, consumer)
    written = {command_words(c) for c in command_table(README.read_text())}
    assert written == done, f"rows without a check: {written - done}; checks without a row: {done - written}"
    assert written == cli_commands(), "the README's command table and `parley --help` differ"

    site.stop(make_run)
    assert "stopped the local Kafka" in make_run.output()


def exercise_the_command_table(site: Site, consumer: Background) -> set[str]:
    """Each command of the README's table, with real arguments, next to the quick start's run."""
    done = {"parley run", "parley consumer"}  # the quick start's `make run`; the example consumer

    commands = cli_commands()

    def ok(args: str, *needles: str, code: int = 0, **env: str) -> str:
        got, output = site.parley(args, **env)
        assert got == code, f"parley {args} exited {got}:\n{output}"
        for needle in needles:
            assert needle in output, f"parley {args}: no {needle!r} in:\n{output}"
        words = ("parley " + args).split()
        done.add(next(" ".join(words[:n]) for n in range(len(words), 0, -1)
                      if " ".join(words[:n]) in commands))
        return output

    ok("kafka status", f"127.0.0.1:{site.kafka_port} running", "used by: ", "parley run (pid ")
    ok("kafka down", "in use by parley run", "--force", code=1)
    other = {"PARLEY_DATA_DIR": str(site.clone / "other")}
    ok(f"kafka up --port {site.port_2}", f"bootstrap 127.0.0.1:{site.port_2}", **other)
    ok("kafka down --wipe", "stopped the local Kafka", **other)
    ok("kafka tool consumer-groups --list", "parley.consumers.search", "parley.consumers.message-counts")
    ok("topics apply", "replication factor 1", "parley.events.chat: unchanged", "parley.dlq.search")
    ok("projections status", "projection v2 (live)", "parley.events.chat[5]  offset 1  end 1  lag 0")
    ok("projections rebuild v3", "rebuilt v3: 1 records")
    ok("projections rebuild analytics", "rebuilt the analytics of v3: ")
    ok("projections drop V3", "serves reads", code=1)  # case ignored: V3 is the live v3
    ok("store migrate", "up to date")
    ok("consumers list", "search", "parley.dlq.search")
    ok("consumers replay message-counts --from 2026-01-01T00:00:00Z --dry-run",
       "would replay 1 event(s) to group parley.consumers.message-counts")
    ok("consumers rebuild search", "rebuild search v2: replaying", "records/s, ETA",
       "live copy switched v1 -> v2", "rebuilt search v2: ")
    site.stop(consumer)
    ok("consumers reset message-counts --to earliest")
    ok("consumers lag message-counts", "parley.events.chat")
    ok("consumers dlq message-counts list", "0 unresolved entries")
    ok("dlq projector list", "0 unresolved entries")
    assert len(ok("keys new-master").strip()) == 44  # 32 random bytes in base64
    # make run generated the data directory's master key; every data key is already under it.
    ok("keys rewrap", "rewrapped 0 data keys under master key ")

    bootstrap = {"PARLEY_KAFKA__BOOTSTRAP": f"127.0.0.1:{site.kafka_port}"}
    receiver = site.start(".venv/bin/parley receiver", '"msg":"listening"',
                          PARLEY_HTTP__PORT=str(site.port_2), **bootstrap)
    code, answer = run(f"curl -s -X POST localhost:{site.port_2}/webhooks/acme "
                       f"-H 'Content-Type: application/json' --data-binary @{SEED}", site.clone, site.env)
    assert code == 0 and '"position":"parley.events.chat:5:1"' in answer, (answer, receiver.output())
    site.stop(receiver)
    done.add("parley receiver")

    # A second projector joins make run's group with a store of its own: it serves the query API
    # (which partitions it folds depends on the rebalance, so no particular chat is asked for).
    projector = site.start(".venv/bin/parley projector", '"msg":"listening"',
                           PARLEY_HTTP__PORT=str(site.port_3),
                           PARLEY_STORE__URL=f"sqlite:///{site.clone / 'projector.db'}")
    projector.wait_until(lambda: site.get("/readyz", site.port_3) == 200, "projector ready")
    assert site.get("/api/chats", site.port_3) == 200
    site.stop(projector)
    done.add("parley projector")

    # Last: an access request, then an erasure (it erases the seed's chat).
    chat = "287146e8-68fd-43c5-b79a-911058bc1c9c"  # the seed's chat; its visitor has no id
    ok(f"visitors export --chat {chat}", '"subject": "natterly:chat:287146e8', '"text": "test"')
    ok("visitors forget-status nobody", "no erasure recorded for 'nobody'", code=1)
    ok(f"visitors forget --chat {chat}", "forgetting natterly:chat:287146e8", "1 chat(s)",
       "erased 1/1")
    ok(f"visitors forget-status {chat}", "done: erased 1/1")
    return done


def cli_commands() -> set[str]:
    """Every runnable command of `parley --help`, down to its leaves."""
    found: set[str] = set()

    def walk(parser: object, words: list[str]) -> None:
        actions = getattr(parser, "_subparsers", None)
        if actions is None:
            found.add(" ".join(words))
            return
        for action in actions._group_actions:
            for name, sub in action.choices.items():
                walk(sub, [*words, name])

    walk(build_parser(), ["parley"])
    return found
