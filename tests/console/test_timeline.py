"""The timeline's pure part (parley/console/timeline.py): the state after each record is the
fold of the prefix, as the projector's Folder computes it; credentials are masked; a record
missing from the log is said to be."""

from __future__ import annotations

import orjson
from aiokafka.structs import ConsumerRecord

from contracts.envelope import encode_envelope
from contracts.position import Position
from parley.console.timeline import fold_entries, masked, pretty
from projector.folder import Folder
from projector.memory_store import MemoryStore
from projector.states import AggregateRef
from tests.kit.live_projector import conversation

TOPIC = "t.events.chat"


def records(chat: str) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for offset, env in enumerate(conversation(chat, n_messages=2)):
        value = encode_envelope(env)
        out.append(ConsumerRecord(TOPIC, 0, offset, 0, 0, env.record_key, value, None,
                                  len(env.record_key), len(value), []))
    return out


async def test_the_state_after_each_record_is_the_fold_of_its_prefix() -> None:
    recs = records("tl-1")
    positions = [Position(TOPIC, 0, r.offset) for r in recs]
    entries = fold_entries(AggregateRef("chat", "tl-1"), positions,
                           dict(zip(positions, recs, strict=True)))
    assert [e.event_type for e in entries] == ["ChatInitiated", "ChatAccepted", "ChatAccepted",
                                              "ChatClosed"]
    for n, entry in enumerate(entries, 1):
        store = MemoryStore()
        await store.open()
        await store.create_projection("p")
        result = await Folder(store).fold("p", recs[:n])
        [row] = [r for r in result.rows if r.kind == "chat"]
        assert entry.view == orjson.loads(row.view), n
        assert entry.events and not entry.problem
    assert [e.view["status"] for e in entries if e.view] == ["waiting", "active", "active",
                                                              "closed"]


def test_a_record_gone_from_the_log_is_said_to_be() -> None:
    [entry] = fold_entries(AggregateRef("chat", "x"), [Position(TOPIC, 0, 9)], {})
    assert entry.problem.startswith("not read from the log") and entry.view is None


def test_credentials_are_masked_at_any_depth() -> None:
    body = {"auth_token": "s3cret", "payload": {"chat": {"uuid": "c1"},
                                                "items": [{"API_KEY": "k", "Signature": ""}]},
            "password": None, "text": "my token is not a key"}
    assert masked(body) == {"auth_token": "[masked]", "payload": {
        "chat": {"uuid": "c1"}, "items": [{"API_KEY": "[masked]", "Signature": ""}]},
        "password": None, "text": "my token is not a key"}
    assert "s3cret" not in pretty(orjson.dumps(body))
    assert pretty(b"not json") == "not json"


def test_a_page_shows_its_records_with_the_states_of_the_whole_prefix() -> None:
    recs = records("tl-2")
    positions = [Position(TOPIC, 0, r.offset) for r in recs]
    by_position = dict(zip(positions, recs, strict=True))
    whole = fold_entries(AggregateRef("chat", "tl-2"), positions, by_position)
    page = fold_entries(AggregateRef("chat", "tl-2"), positions, by_position, shown_from=2)
    assert [(e.position, e.view, e.events) for e in page] == [
        (e.position, e.view, e.events) for e in whole[2:]]
    unfolded = fold_entries(AggregateRef("chat", "tl-2"), positions[2:], by_position, fold=False)
    assert [e.event_type for e in unfolded] == [e.event_type for e in whole[2:]]
    assert all(e.view is None and e.events for e in unfolded)
