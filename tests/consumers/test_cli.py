"""``parley consumers list | lag | reset | dlq`` through the real command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from consumer_kit.events import chat_event, produce
from consumer_kit.helpers import running, wait_for
from consumer_kit.process import KIT_DIR, REPO

from consumers.api import ConsumedEvent, consumer
from consumers.errors import PermanentError
from contracts.topics import Topics
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


async def parley(tmp_path: Path, k: KafkaSettings, *args: str) -> tuple[int, str]:
    config = tmp_path / "cli.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[kafka]\nbootstrap = "{k.bootstrap}"\n'
                      f'topic_prefix = "{k.topic_prefix}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", "--config", str(config), *args, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{KIT_DIR}:{REPO}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


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
