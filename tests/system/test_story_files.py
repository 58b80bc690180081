"""The story files and their comparison, without Kafka: every story loads, says what it is
for, carries bodies its provider would send, and a mismatch names the field, what was
expected and what came."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from contracts.ingest import parse_webhook
from contracts.normalise import normalise_decoded
from tests.kit.story import STORIES, Story, mismatches

PATHS = sorted(STORIES.glob("*/*.toml"))


def test_both_providers_have_stories() -> None:
    assert {p.parent.name for p in PATHS} == {"natterly", "chatshipper"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_story_file_is_complete_and_its_bodies_parse(path: Path) -> None:
    story = Story.load(path)
    assert path.read_text(encoding="utf-8").startswith("# "), "a comment header says the intent"
    assert story.intent and story.source == path.parent.name and story.webhooks
    assert any(story.expect.values()), "a story expects something"
    for i, hook in enumerate(story.with_fresh_ids("salt").webhooks):
        body = hook.body.encode()
        orjson.loads(body)  # JSON, as the provider sends it
        env = parse_webhook(story.source, story.source, body, received_at=datetime.now(UTC))
        dropped: list[str] = []
        events = normalise_decoded(env, dropped=dropped)
        # Every field means something: nothing of a story's body is dropped as mistyped.
        assert events and not dropped, f"webhook {i} ({hook.note}): {events=} {dropped=}"


def test_fresh_ids_are_consistent_and_map_back() -> None:
    story = Story.load(STORIES / "natterly" / "transfer.toml")
    fresh = story.with_fresh_ids("run-1")
    chat = story.expect["chat"][0]["id"]
    new_chat = fresh.expect["chat"][0]["id"]
    assert new_chat != chat and all(new_chat in h.body for h in fresh.webhooks)
    assert story.with_fresh_ids("run-1").expect == fresh.expect
    assert story.with_fresh_ids("run-2").expect["chat"][0]["id"] != new_chat
    assert fresh.as_written(f"chat {new_chat}.status") == f"chat {chat}.status"


def test_mismatches_name_the_field_expected_and_got() -> None:
    got = {"status": "active", "agent": {"id": "a1", "name": "Alice"}, "rating": None,
           "pages": [{"url": "/x", "title": "X"}]}
    assert mismatches({"status": "active", "agent": {"id": "a1"}}, got, "chat c") == []
    assert mismatches({"status": "closed", "agent": {"name": "Bob"}, "pages": [{"url": "/y"}]},
                      got, "chat c", ("agent",)) == [
        "chat c.agent: expected null, got {'id': 'a1', 'name': 'Alice'}",
        "chat c.status: expected 'closed', got 'active'",
        "chat c.agent.name: expected 'Bob', got 'Alice'",
        "chat c.pages[0].url: expected '/y', got '/x'",
    ]
    assert mismatches({"pages": []}, got, "v") == [
        "v.pages: expected 0 items [], got [{'url': '/x', 'title': 'X'}]"]
