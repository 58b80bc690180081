"""``parley visitors forget | forget-status | export`` end to end on a real broker and a
SQLite store; an unknown visitor, email or chat is one line, exit 1, and changes nothing.
Every error is one ``parley: error: …`` line on stderr, as in the rest of the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from contracts.topics import Topics
from parley.cli import main
from parley.erasure_ledger import LedgerWriter, read_ledger
from parley.settings import KafkaSettings
from projector.stores import open_store
from tests.kit.live_projector import (
    applied,
    conversation,
    eventually,
    produce,
    running_projector,
    write_config,
)


async def parley(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_forget_status_and_export_by_id_email_and_chat(
        kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], ledger_topic: None) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = str(write_config(tmp_path / "parley.toml", kafka_settings, url))
    positions = await produce(kafka_settings, topics, [*conversation("c1", visitor="vis-1"),
                                                        *conversation("c2", visitor="vis-2")])
    ledger = LedgerWriter(kafka_settings, topics)
    async with running_projector(kafka_settings, topics, url, group_id=f"{unique}-p",
                                 ledger=ledger) as projector:
        await eventually(lambda: applied(projector.store, positions), "folded")

        code, out, _ = await parley(capsys, "visitors", "export", "vis-1", "--config", config)
        document = json.loads(out)
        assert code == 0 and document["subject"] == "natterly:visitor:vis-1"
        assert document["visitor"]["name"] == "Visitor vis-1"
        assert [m["text"] for m in document["chats"][0]["messages"]] == [
            "message 0", "message 1", "message 2"]

        code, out, _ = await parley(capsys, "visitors", "forget", "--chat", "c1",
                                    "--config", config)
        assert code == 0, out
        assert out.startswith("forgetting natterly:visitor:vis-1: 1 visitor(s), 1 chat(s)")
        assert "projection v1: erased 2/2 in " in out

        async def recorded() -> bool:
            return len(await read_ledger(kafka_settings, topics)) >= 3  # request + 2 erased
        await eventually(recorded, "the projector's ledger entries")
        code, out, _ = await parley(capsys, "visitors", "forget-status", "vis-1",
                                    "--config", config)
        assert code == 0
        lines = out.splitlines()
        assert lines[0].startswith("erasure ") and "natterly:visitor:vis-1" in lines[0]
        assert lines[1].startswith("projection v1 (live)  done: erased 2/2 in its state; "
                                   "ledger: 2 recorded, last at ")

        code, out, _ = await parley(capsys, "visitors", "export", "vis-1", "--config", config)
        assert "Visitor vis-1" not in out and "message 1" not in out
        assert json.loads(out)["visitor"]["erasure"] is not None
    await ledger.close()


@pytest.mark.parametrize(("who", "said"), [
    (["nobody"], "no visitor 'nobody'; nothing changed"),
    (["--email", "Nobody@Example.org"], "no visitor with that email (N…@Example.org); "
                                        "nothing changed"),
    (["--chat", "nochat"], "no chat 'nochat'; nothing changed"),
])
async def test_an_unknown_subject_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], who: list[str], said: str) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    await store.open()
    await store.create_projection("v1")
    await store.set_live("v1")
    await store.close()
    # Kafka is never reached: nothing is resolved, so nothing is published.
    config = str(write_config(tmp_path / "parley.toml", KafkaSettings(bootstrap="127.0.0.1:9"),
                              url))
    code, out, err = await parley(capsys, "visitors", "forget", *who, "--config", config)
    assert (code, out, err) == (1, "", f"parley: error: {said}\n")
    code, out, err = await parley(capsys, "visitors", "export", *who, "--config", config)
    assert (code, out, err) == (1, "", f"parley: error: {said.removesuffix('; nothing changed')}\n")


async def test_without_a_projection_forget_and_export_each_say_so_in_their_own_words(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = str(write_config(tmp_path / "parley.toml", KafkaSettings(bootstrap="127.0.0.1:9"),
                              url))
    code, out, err = await parley(capsys, "visitors", "forget", "vis-1", "--config", config)
    assert (code, out) == (1, "") and err.startswith("parley: error: no projection yet")
    assert err.endswith("; nothing changed\n") and err.count("\n") == 1
    code, out, err = await parley(capsys, "visitors", "export", "vis-1", "--config", config)
    assert (code, out) == (1, "") and err.startswith("parley: error: no projection yet")
    assert "forget" not in err and err.count("\n") == 1  # it was "nothing to forget"


async def test_no_erasure_and_a_forget_not_applied_in_time_are_parley_errors(
        kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], ledger_topic: None) -> None:
    """The two errors that need Kafka: the same one line on stderr as every other error of
    the CLI (they had no ``parley: error:``, and the timeout was written on stdout)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = str(write_config(tmp_path / "parley.toml", kafka_settings, url))
    positions = await produce(kafka_settings, topics, conversation("c1", visitor="vis-1"))
    async with running_projector(kafka_settings, topics, url,
                                 group_id=f"{unique}-p") as projector:
        await eventually(lambda: applied(projector.store, positions), "folded")
    # The projector has stopped: nothing erases the forgotten records within the timeout.
    code, out, err = await parley(capsys, "visitors", "forget", "vis-1", "--timeout", "0.5",
                                  "--config", config)
    assert code == 1 and out.startswith("forgetting natterly:visitor:vis-1: "), (out, err)
    assert err == ("parley: error: projection v1: erased 0/2 after 0.5 s (is the projector "
                   "running?); see parley visitors forget-status\n")
    code, out, err = await parley(capsys, "visitors", "forget-status", "nobody",
                                  "--config", config)
    assert (code, out, err) == (1, "", "parley: error: no erasure recorded for 'nobody'\n")


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_a_bad_timeout_is_refused_before_anything_is_forgotten(
        capsys: pytest.CaptureFixture[str], timeout: str) -> None:
    # It destroyed the keys, then reported "erased 1/11 after -1 s": a forget is not undone.
    with pytest.raises(SystemExit) as exit_:
        main(["visitors", "forget", "vis-1", "--timeout", timeout])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith(f"argument --timeout: must be a number of seconds above 0, not {timeout!r}")
