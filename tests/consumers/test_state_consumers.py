"""Consumers of state topics: ``@consumer(name, states=...)`` on a real broker."""

from __future__ import annotations

import msgspec
import pytest

from consumers.api import ConsumedEvent, consumer
from contracts.state import ChatState
from contracts.topics import EVENT_TOPIC_KINDS, Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings
from projector.outbox import wrap_state
from projector.state_publisher import StatePublisher
from projector.stores import open_store
from projector.views import Row
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import running, wait_for
from tests.kit.store_contract import chat, message


def test_the_decorator_reads_states_or_events_or_both() -> None:
    async def handle(event: ConsumedEvent) -> None:
        pass

    topics = Topics(prefix="p")
    states_only = consumer("s", states=("chat",))(handle)
    assert states_only.topic_names(topics) == ("p.state.chat",)
    assert consumer("e")(handle).topics == EVENT_TOPIC_KINDS
    both = consumer("b", topics=("chat",), states=("chat", "agent"))(handle)
    assert both.topic_names(topics) == ("p.events.chat", "p.state.chat", "p.state.agent")
    with pytest.raises(ValueError, match="states must be among"):
        consumer("x", states=("other",))(handle)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topics must be among"):
        consumer("x", topics=())(handle)


def test_a_state_record_is_told_from_an_event_record() -> None:
    state = ConsumedEvent.of(topic="my.state.prefix.state.chat", partition=0, offset=0,
                             key="c1", value=b"{}")
    event = ConsumedEvent.of(topic="my.state.prefix.events.chat", partition=0, offset=0,
                             key="c1", value=b"{}")
    assert state.is_state and not event.is_state


async def test_a_consumer_of_chat_states_gets_the_committed_states(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    store = open_store("memory://")
    await store.open()
    await store.create_projection("p")
    def covering(offset: int) -> Row:  # a chat state covering t:0 up to ``offset``
        return msgspec.structs.replace(chat("c1", version=offset),
                                       state=wrap_state(b"S", (("t", 0, offset),)))

    await StatePublisher.ensure_topics(kafka_settings, topics)
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        publisher = StatePublisher(store, producer, topics)
        await store.commit("p", [covering(2), message("c1", "m1", sort_key="1")], {}, publish=True)
        assert await publisher.publish_pending() == 2
        await store.commit("p", [covering(6)], {}, publish=True)
        assert await publisher.publish_pending() == 1
    finally:
        await producer.stop()
    await produce(kafka_settings, topics, [chat_event("c9", 0)])  # an event: not for this group
    seen: list[ConsumedEvent] = []

    @consumer(f"states-{unique}", states=("chat",))
    async def record(event: ConsumedEvent) -> None:
        seen.append(event)

    async with running(record, kafka_settings, topics):
        await wait_for(lambda: len(seen) >= 3, what="three state changes")
    assert sorted((e.state.kind, e.state.id) for e in seen) == [
        ("chat", "c1"), ("chat", "c1"), ("message", "c1/m1")]
    chats = [e.state.version for e in seen if e.state.kind == "chat"]
    assert chats == sorted(chats)  # one key: in commit order
    assert all(e.is_state for e in seen)
    assert all(isinstance(e.state.state, ChatState) for e in seen if e.state.kind == "chat")
    assert chats == [3, 7]
    first = next(e for e in seen if e.state.kind == "chat")
    assert first.event_id == "chat:c1:3"
