"""``parley consumer`` as a real process: SIGTERM finishes the batch and commits (a restart
redelivers nothing); SIGKILL mid-batch loses nothing (a restart redelivers at most the
unfinished batch)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from contracts.topics import Topics
from parley.settings import KafkaSettings
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import committed, wait_for
from tests.kit.consumers.process import ConsumerProcess

# Its consumers may dead-letter: drop this test's dead-letter topics after it, as
# tests/consumers/conftest.py does for every consumer test.
pytestmark = [pytest.mark.kafka, pytest.mark.slow,
              pytest.mark.usefixtures("dead_letter_topics_dropped")]
N = 600


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_sigterm_finishes_batch_and_commits_then_restart_redelivers_nothing(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    envs = [chat_event(f"chat-{i % 30}", i) for i in range(N)]
    await produce(kafka_settings, topics, envs)
    out = tmp_path / "seen.txt"
    env = {"RECORDING_FILE": str(out), "RECORDING_DELAY_S": "0.01"}
    proc = ConsumerProcess(tmp_path, kafka_settings, "tests.kit.consumers.recording:recording",
                           max_records=60, env=env)
    proc.start()
    try:
        await proc.wait_ready()
        await wait_for(lambda: len(_lines(out)) >= 100, what="some events handled")
        proc.signal(signal.SIGTERM)
        assert await proc.wait_exit() == 0
    finally:
        proc.kill()
    handled = _lines(out)
    assert 100 <= len(handled) < N and len(set(handled)) == len(handled)
    group = Topics(prefix=kafka_settings.topic_prefix).group_id("recording")
    # Everything handled is committed and nothing unhandled is: the batch was finished.
    assert sum((await committed(kafka_settings, group)).values()) == len(handled)

    again = ConsumerProcess(tmp_path, kafka_settings, "tests.kit.consumers.recording:recording",
                            max_records=60, env=env)
    again.start()
    try:
        await wait_for(lambda: len(_lines(out)) >= N, timeout_s=45, what="all events")
        again.signal(signal.SIGTERM)
        assert await again.wait_exit() == 0
    finally:
        again.kill()
    handled = _lines(out)
    assert sorted(handled) == sorted(e.event_id for e in envs)  # exactly once each


async def test_sigkill_mid_batch_then_restart_loses_nothing(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    envs = [chat_event(f"chat-{i % 30}", i) for i in range(N)]
    await produce(kafka_settings, topics, envs)
    out = tmp_path / "seen.txt"
    env = {"RECORDING_FILE": str(out), "RECORDING_DELAY_S": "0.01"}
    proc = ConsumerProcess(tmp_path, kafka_settings, "tests.kit.consumers.recording:recording",
                           max_records=60, env=env)
    proc.start()
    try:
        await proc.wait_ready()
        await wait_for(lambda: len(_lines(out)) >= 150, what="some events handled")
        proc.signal(signal.SIGKILL)
        assert await proc.wait_exit() == -signal.SIGKILL
    finally:
        proc.kill()
    before = len(_lines(out))
    again = ConsumerProcess(tmp_path, kafka_settings, "tests.kit.consumers.recording:recording",
                            max_records=60, env=env)
    again.start()
    try:
        await wait_for(lambda: set(_lines(out)) >= {e.event_id for e in envs}, timeout_s=45,
                       what="every event handled after the restart")
        again.signal(signal.SIGTERM)
        assert await again.wait_exit() == 0
    finally:
        again.kill()
    handled = _lines(out)
    assert set(handled) == {e.event_id for e in envs}
    # At-least-once: only the killed member's uncommitted batches (<= 60 records per batch,
    # one batch in flight) are redelivered.
    assert len(handled) - N <= 60, (before, len(handled))
