"""``parley consumers list | lag | reset | dlq`` through the real command line."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from consumers.api import ConsumedEvent, consumer
from consumers.errors import PermanentError
from contracts.topics import Topics
from parley.settings import KafkaSettings
from tests.kit.consumers.cli import parley
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import running, wait_for
from tests.kit.consumers.process import ConsumerProcess

pytestmark = pytest.mark.kafka


async def test_list_lag_reset_and_dlq(tmp_path: Path, kafka_settings: KafkaSettings,
                                      topics: Topics) -> None:
    await produce(kafka_settings, topics, [chat_event(f"k{i % 3}", i) for i in range(9)]
                  + [chat_event("bad", 100), chat_event("bad", 101)])
    code, out = await parley(tmp_path, kafka_settings, "consumers", "list")
    assert code == 0 and f"{kafka_settings.topic_prefix}.consumers.search" in out

    # search reads the projector's chat states (none published here), not the events
    code, out = await parley(tmp_path, kafka_settings, "consumers", "lag", "search", "--json")
    assert code == 0 and '"lag_records":0' in out and f'"{topics.state("chat")}"' in out, out

    handled: list[str] = []

    @consumer("cli-poison", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        if ev.key == "bad":
            raise PermanentError("poison")
        handled.append(ev.event_id)

    async with running(handle, kafka_settings, topics) as runner:
        await wait_for(lambda: len(handled) == 9 and len(runner.dead.state.entries()) == 2,
                       what="handled and dead-lettered")
        code, out = await parley(tmp_path, kafka_settings, "consumers", "reset", "cli-poison",
                                 "--to", "earliest")
        assert code == 1 and "active member" in out
    code, out = await parley(tmp_path, kafka_settings, "consumers", "lag", "cli-poison")
    assert code == 0 and all(line.split()[-2] == "0" for line in out.splitlines()[1:])

    code, out = await parley(tmp_path, kafka_settings, "consumers", "dlq", "cli-poison", "list")
    assert code == 0 and "dead" in out and "PermanentError: poison" in out and "parked" in out
    code, out = await parley(tmp_path, kafka_settings, "consumers", "dlq", "cli-poison", "skip",
                             "--key", "bad")
    assert code == 0 and "skipped 2 entries" in out
    code, out = await parley(tmp_path, kafka_settings, "consumers", "dlq", "cli-poison", "list")
    assert "0 unresolved entries" in out

    code, out = await parley(tmp_path, kafka_settings, "consumers", "reset", "cli-poison",
                             "--to", "earliest")
    assert code == 0 and out.count(" -> 0") == 3
    code, out = await parley(tmp_path, kafka_settings, "consumers", "lag", "--json",
                             "cli-poison")
    assert code == 0 and '"lag_records":11' in out, out  # everything is to be redelivered


async def test_lag_without_names_skips_an_unconfigured_builtin_with_a_note(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await produce(kafka_settings, topics, [chat_event("k", 1)])
    code, out = await parley(tmp_path, kafka_settings, "consumers", "lag")
    assert code == 0, out
    assert ("parley: note: crm skipped (not configured here: no [consumers.crm] table; its "
            "group has no committed offsets)") in out
    rows = [line.split() for line in out.splitlines()
            if not line.startswith(("parley:", "consumer "))]
    assert rows and {row[0] for row in rows} == {"search"}, out
    # Search reads the projector's chat states, not the event it was given here: its rows are
    # those of the state topic, with nothing to consume yet.
    assert {row[1] for row in rows} == {f"{kafka_settings.topic_prefix}.state.chat"}, out
    assert sum(int(row[5]) for row in rows) == 0


def _port_moved(log: Path) -> dict[str, object] | None:
    for line in log.read_text().splitlines() if log.exists() else []:
        if '"port_in_use"' in line:
            doc: dict[str, object] = json.loads(line)
            return doc
    return None


async def test_a_consumer_beside_parley_run_serves_on_the_next_free_port(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    # The README's example, next to `make run`: the configuration's http.port is taken.
    proc = ConsumerProcess(tmp_path, kafka_settings, "examples.message_counts:message_counts",
                           env={"MESSAGE_COUNTS_DB": str(tmp_path / "counts.db")})
    with socket.create_server(("127.0.0.1", proc.port)):  # what `parley run` holds
        proc.start()
        try:
            await wait_for(lambda: _port_moved(proc.log) is not None, what="the port line")
            moved = _port_moved(proc.log)
            assert moved is not None and moved["port_in_use"] == proc.port
            assert moved["msg"] == (f"port {proc.port} is in use (by `parley run`?): serving on "
                                    f"port {moved['port']} instead; choose one with --port or "
                                    "http.port")
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{moved['port']}/healthz") as resp:
                assert resp.status == 200
            proc.signal(signal.SIGTERM)
            assert await proc.wait_exit() == 0
        finally:
            proc.kill()
    assert "Traceback" not in proc.log.read_text()


async def test_a_taken_port_given_with_port_is_one_line(
        tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out = await parley(tmp_path, kafka_settings, "consumer", "search",
                                 "--port", str(port))
    assert code == 1
    assert out.strip().splitlines() == [
        f"parley: error: cannot listen on 127.0.0.1:{port}: port {port} is in use (by `parley "
        "run` or another Parley process?); stop it, or choose another port with http.port / "
        "PARLEY_HTTP__PORT (or --port, where the command has it)"], out


async def test_dlq_of_an_unknown_group_is_refused_and_creates_nothing(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    from consumers.groups import group_known
    from parley.kafka.clients import make_admin

    for action in ("list", "skip"):
        code, out = await parley(tmp_path, kafka_settings, "dlq", "serach", action)
        assert code == 1, out
        assert f"unknown consumer group {topics.group_id('serach')}" in out, out
        assert "Traceback" not in out
    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        assert topics.dlq("serach") not in await admin.list_topics()
    finally:
        await admin.close()
    assert not await group_known(kafka_settings, topics.group_id("serach"), topics.dlq("serach"))
