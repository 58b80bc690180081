"""``parley consumers replay NAME``: chosen events again, to one running group, in key order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from consumers.api import ConsumedEvent, consumer
from consumers.replay import ReplayFilter, _matcher
from contracts.envelope import encode_envelope
from contracts.state_change import encode_state_change
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings
from tests.kit.consumers.cli import parley
from tests.kit.consumers.events import chat_body, chat_event, envelope, produce
from tests.kit.consumers.helpers import committed, end_offsets, running, wait_for

pytestmark = pytest.mark.kafka


class _Seen:
    """What a handler saw: every delivery, and whether two of one key ever overlapped."""

    def __init__(self) -> None:
        self.live: list[tuple[str, str, int]] = []  # (event id, key, offset)
        self.replayed: list[tuple[str, str, tuple[str, int, int]]] = []  # (id, key, position)
        self.busy: set[str] = set()
        self.overlaps: list[str] = []

    async def handle(self, ev: ConsumedEvent) -> None:
        key = ev.key or ""
        if key in self.busy:
            self.overlaps.append(key)
        self.busy.add(key)
        try:
            await asyncio.sleep(0.002)  # long enough for two lanes of one key to overlap
        finally:
            self.busy.discard(key)
        if ev.replayed:
            self.replayed.append((ev.event_id, key, (ev.topic, ev.partition, ev.offset)))
        else:
            self.live.append((ev.event_id, key, ev.offset))


async def _group_ready(k: KafkaSettings, group: str, n_topics: int = 1) -> None:
    async def has() -> bool:
        return len({tp.topic for tp in await committed(k, group)}) >= n_topics
    deadline = asyncio.get_running_loop().time() + 30
    while not await has():
        assert asyncio.get_running_loop().time() < deadline, "no committed offsets"
        await asyncio.sleep(0.1)


async def test_replay_sends_exactly_the_matching_events_in_key_order_while_live_flows(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    k = kafka_settings
    early = await produce(k, topics, [chat_event(f"c{i % 4}", i) for i in range(40)])
    await asyncio.sleep(0.01)  # the record timestamps are the produce times (ms): step past
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.01)
    late_envs = [chat_event(f"c{i % 4}", i) for i in range(40, 100)]
    late = await produce(k, topics, late_envs)
    await asyncio.sleep(0.01)
    until = datetime.now(UTC)  # live events from here on are outside the replay's range
    assert early and late
    wanted = [(env.event_id, pos) for env, pos in zip(late_envs, late, strict=True)
              if env.key == "c1"]
    seen = _Seen()
    target = consumer("replay-target", topics=("chat",), concurrency=8)(seen.handle)
    group = topics.group_id("replay-target")
    async with running(target, k, topics) as runner:
        await wait_for(lambda: len(seen.live) == 100, what="first delivery")
        await _group_ready(k, group)
        code, out = await parley(tmp_path, k, "consumers", "replay", "replay-target",
                                 "--dry-run", "--chat", "c1", "--from", boundary.isoformat())
        assert code == 0 and f"would replay {len(wanted)} event(s)" in out, out
        assert sum((await end_offsets(k, [runner.replay_topic])).values()) == 0  # nothing sent

        # live traffic keeps flowing, c1 included, while the replay is sent and handled
        async def live() -> None:
            for j in range(5):
                await produce(k, topics, [chat_event(f"c{i % 4}", i)
                                          for i in range(200 + 20 * j, 220 + 20 * j)])
        feeding = asyncio.create_task(live())
        code, out = await parley(tmp_path, k, "consumers", "replay", "replay-target",
                                 "--chat", "c1", "--from", boundary.isoformat(),
                                 "--to", until.isoformat(), "--type", "ChatAssigned")
        await feeding
        assert code == 0 and f"replayed {len(wanted)} event(s) to group {group}" in out, out
        assert "scanned" in out and "records/s" in out  # the progress line
        await wait_for(lambda: len(seen.replayed) == len(wanted) and len(seen.live) == 200,
                       what="replayed and live events")
    # exactly the matching events, each once, with their first delivery's ids and positions,
    # in log order; never at the same time as another delivery of their key
    assert [(i, pos) for i, _, pos in seen.replayed] == wanted
    assert not seen.overlaps
    assert len({i for i, _, _ in seen.live}) == 200  # live events went on, once each


async def test_a_keys_copies_and_live_events_are_never_handled_at_once(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    """Copies and live events of one key fetched together share the key's lane."""
    k = kafka_settings
    await produce(k, topics, [chat_event("c1", i) for i in range(30)])
    seen = _Seen()
    target = consumer("replay-lanes", topics=("chat",), concurrency=8)(seen.handle)
    async with running(target, k, topics):
        await wait_for(lambda: len(seen.live) == 30, what="first delivery")
        await _group_ready(k, topics.group_id("replay-lanes"))
    # the group is stopped: copies and new live events of c1 wait for it, to be fetched together
    code, out = await parley(tmp_path, k, "consumers", "replay", "replay-lanes", "--chat", "c1")
    assert code == 0 and "replayed 30 event(s)" in out, out
    await produce(k, topics, [chat_event("c1", i) for i in range(30, 60)])
    async with running(target, k, topics):
        await wait_for(lambda: len(seen.replayed) == 30 and len(seen.live) == 60,
                       what="copies and live events")
    assert not seen.overlaps
    assert [pos[2] for _, _, pos in seen.replayed] == sorted(o for _, _, o in seen.live[:30])
    # the replay topic is the group's own plumbing: lag (and reset) leave it out
    assert topics.replay("replay-lanes") in {tp.topic for tp in await committed(
        k, topics.group_id("replay-lanes"))}
    code, out = await parley(tmp_path, k, "consumers", "lag", "replay-lanes")
    assert code == 0 and topics.chat in out and topics.replay("replay-lanes") not in out, out


async def test_replay_refuses_bad_input_and_sends_nothing_for_no_match(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    k = kafka_settings
    code, out = await parley(tmp_path, k, "consumers", "replay", "nobody-here", "--chat", "c1")
    assert code == 1 and out.strip().count("\n") == 0, out
    assert out.startswith("parley: error: unknown consumer group ") and "nobody-here" in out
    for bad in (["--from", "yesterday"], ["--to", "2026-13-01"],
                ["--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"]):
        code, out = await parley(tmp_path, k, "consumers", "replay", "nobody-here", *bad)
        assert code == 1 and out.count("\n") == 1 and out.startswith("parley: error: --"), out

    await produce(k, topics, [chat_event(f"c{i % 2}", i) for i in range(6)])
    seen = _Seen()
    target = consumer("replay-none", topics=("chat",))(seen.handle)
    async with running(target, k, topics) as runner:
        await wait_for(lambda: len(seen.live) == 6, what="first delivery")
        await _group_ready(k, topics.group_id("replay-none"))
        for flt in (["--chat", "nope"], ["--source", "elsewhere"], ["--type", "ChatClosed"],
                    ["--from", "2030-01-01T00:00:00Z"]):
            code, out = await parley(tmp_path, k, "consumers", "replay", "replay-none", *flt)
            assert code == 0 and "no record matches the filter" in out and \
                "nothing sent" in out, (flt, out)
        assert sum((await end_offsets(k, [runner.replay_topic])).values()) == 0


def _record(topic: str, key: str, value: bytes) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic=topic, partition=0, offset=0, timestamp=0, timestamp_type=0,
                          key=key.encode(), value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value), headers=())


def test_filter_reads_source_type_and_chat_from_envelopes_and_states() -> None:
    t = Topics(prefix="p")
    env = envelope(chat_body("ChatClosed", "c7"))
    rec = _record(t.chat, "c7", encode_envelope(env))
    assert env.source == "acme"

    def m(**kw: str) -> bool:
        return _matcher(ReplayFilter(**kw), t, t.chat)(rec)  # type: ignore[arg-type]
    assert m() and m(chat="c7") and m(source="acme") and m(type="ChatClosed")
    assert not m(chat="c8") and not m(source="other") and not m(type="ChatInitiated")
    assert not _matcher(ReplayFilter(type="X"), t, t.chat)(_record(t.chat, "c7", b"not json"))
    value = encode_state_change("message", "c7/m1", [(t.chat, 0, 3)],
                                b'{"id":"m1","chat_id":"c7"}')
    srec = _record(t.state("chat"), "c7/m1", value)
    assert _matcher(ReplayFilter(chat="c7", type="message"), t, t.state("chat"))(srec)
    assert not _matcher(ReplayFilter(chat="c7", type="chat"), t, t.state("chat"))(srec)


async def test_a_state_consumer_gets_the_chosen_states_again(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    k = kafka_settings
    producer = make_producer(k)
    await producer.start()
    sent: list[tuple[str, tuple[str, int, int]]] = []  # (event id, position) of c1's messages
    try:
        for i in range(12):
            chat_id = f"c{i % 3}"
            kind, key = ("message", f"{chat_id}/m{i}") if i % 2 else ("chat", chat_id)
            state = (f'{{"id":"m{i}","chat_id":"{chat_id}"}}' if kind == "message"
                     else f'{{"id":"{chat_id}","source":"acme"}}')
            value = encode_state_change(kind, key, [(topics.chat, 0, i)], state.encode())
            meta = await producer.send_and_wait(topics.state("chat"), value, key=key.encode())
            if chat_id == "c1" and kind == "message":
                sent.append((f"message:{key}:{i + 1}", (meta.topic, meta.partition, meta.offset)))
    finally:
        await producer.stop()
    seen = _Seen()
    target = consumer("replay-states", states=("chat",))(seen.handle)
    async with running(target, k, topics):
        await wait_for(lambda: len(seen.live) == 12, what="first delivery")
        await _group_ready(k, topics.group_id("replay-states"))
        code, out = await parley(tmp_path, k, "consumers", "replay", "replay-states",
                                 "--chat", "c1", "--type", "message")
        assert code == 0 and f"replayed {len(sent)} event(s)" in out, out
        await wait_for(lambda: len(seen.replayed) == len(sent), what="replayed states")
    assert sorted((i, pos) for i, _, pos in seen.replayed) == sorted(sent)
