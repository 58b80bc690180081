"""Point 1: finding consumers (built-in, entry point, module:attribute) and the ~20-line
example of docs/consumers.md running against the real broker."""

from __future__ import annotations

import importlib.util
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from consumers.api import Consumer
from consumers.errors import ConsumerNotFound
from consumers.registry import known_consumers, load_consumer
from contracts.topics import Topics
from parley.settings import KafkaSettings, Settings
from tests.kit.consumers.events import chat_body, envelope, message, produce
from tests.kit.consumers.helpers import running, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "message_counts.py"


def test_example_is_about_twenty_lines() -> None:
    assert len(EXAMPLE.read_text().splitlines()) <= 25


def test_entry_point_module_attribute_and_builtin_lookup(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "acme_consumers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-consumers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[parley.consumers]\nrecorder = tests.kit.consumers.recording:recording\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings()
    assert [(k.name, k.origin) for k in known_consumers()][-1] == ("recorder", "entry point")
    by_entry_point = load_consumer("recorder", settings)
    by_ref = load_consumer("tests.kit.consumers.recording:recording", settings)
    assert isinstance(by_entry_point, Consumer) and by_entry_point is by_ref
    assert load_consumer("search", settings).name == "search"
    with pytest.raises(ConsumerNotFound, match="no consumer named 'nope'"):
        load_consumer("nope", settings)
    with pytest.raises(ConsumerNotFound, match="no attribute"):
        load_consumer("tests.kit.consumers.recording:missing", settings)


@pytest.mark.kafka
async def test_example_counts_each_message_once(tmp_path: Path, kafka_settings: KafkaSettings,
                                                topics: Topics,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("message_counts_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    db = tmp_path / "counts.db"
    monkeypatch.setenv("MESSAGE_COUNTS_DB", str(db))
    first = envelope(chat_body("ChatInitiated", "c1", messages=[message("m1", "hi")]))
    await produce(kafka_settings, topics, [
        first,
        first,  # a provider's redelivery: same event id
        envelope(chat_body("ChatAccepted", "c1", messages=[message("m1", "hi"),
                                                           message("m2", "hello")])),
        envelope(chat_body("ChatInitiated", "c2", messages=[message("m3", "yo")])),
    ])

    def counts() -> dict[str, int]:
        if not db.exists():
            return {}
        with closing(sqlite3.connect(db)) as conn:
            try:
                rows = conn.execute("SELECT chat_id, count(*) FROM messages GROUP BY chat_id")
                return dict(rows.fetchall())
            except sqlite3.OperationalError:
                return {}

    async with running(module.message_counts, kafka_settings, topics):
        await wait_for(lambda: counts() == {"c1": 2, "c2": 1}, what="message counts")


def test_docs_show_the_example_as_it_is() -> None:
    doc = (EXAMPLE.parents[1] / "docs" / "consumers.md").read_text()
    code = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert code in doc
