"""``parley run`` end to end: post the seed webhook, read the chat back, stop with Ctrl-C."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from parley.kafka.clients import make_admin
from parley.kafka.launcher import free_ports
from parley.settings import KafkaSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly" / "chat_initiated_seed.json"
SEED_CHAT = "287146e8-68fd-43c5-b79a-911058bc1c9c"
SEED_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the fixture's own auth_token


@pytest.fixture
async def prefix_cleanup(kafka_settings: KafkaSettings) -> AsyncIterator[None]:
    """Delete every topic `parley run` created under this test's prefix."""
    yield
    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith(kafka_settings.topic_prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def test_parley_run_posts_seed_reads_chat_and_stops_on_sigint(
        kafka_settings: KafkaSettings, tmp_path: Path, prefix_cleanup: None) -> None:
    [port] = free_ports(1)
    config = tmp_path / "parley.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        'log_level = "INFO"\n'
        f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n'
        f'topic_prefix = "{kafka_settings.topic_prefix}"\npartitions = 3\n'
        f"[http]\nport = {port}\n"
        f'[store]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[sources.acme]\nprovider = "natterly"\nauth_tokens = ["{SEED_TOKEN}"]\n',
        encoding="utf-8")
    log_path = tmp_path / "parley-run.log"
    with log_path.open("wb") as log_file:  # a file, not a pipe: a full pipe would block the server
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "parley.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            while True:  # ready = every role's readiness check passes
                assert proc.returncode is None, f"parley run exited: {log_path.read_text()[-3000:]}"
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert loop.time() < deadline, "parley run not ready within 90 s"
                await asyncio.sleep(0.2)  # poll interval of the readiness wait

            # What the README's quick start does with curl.
            async with http.post(f"{base}/webhooks/acme", data=SEED.read_bytes(),
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status in (200, 201, 202), await resp.text()
                accepted = await resp.json()
            position = accepted["position"]
            assert position.startswith(f"{kafka_settings.topic_prefix}.events.chat:")
            async with http.get(f"{base}/api/chats/{SEED_CHAT}",
                                params={"min_position": position}) as resp:
                assert resp.status == 200, await resp.text()
                chat = await resp.json()
            assert chat["id"] == SEED_CHAT
            assert chat["provider"] == "natterly" and chat["source"] == "acme"
            assert chat["status"] == "waiting" and chat["message_count"] == 1
            assert chat["subject"] == "test"
            async with http.get(f"{base}/api/chats/{SEED_CHAT}/messages") as resp:
                messages = (await resp.json())["items"]
            assert [m["text"] for m in messages] == ["test"]
            async with http.get(f"{base}/api/chats", params={"source": "acme"}) as resp:
                assert [c["id"] for c in (await resp.json())["items"]] == [SEED_CHAT]

        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log_text = log_path.read_text()
    assert SEED_TOKEN not in log_text  # the secret never reaches the logs
    # The whole flow above, graceful SIGINT included, ran on the default loop: uvloop.
    listening = [line for line in map(_json_line, log_text.splitlines())
                 if line.get("msg") == "listening"]
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert [line["event_loop"] for line in listening] == [expected], log_text[-3000:]


def _json_line(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
