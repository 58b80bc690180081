"""The golden bodies: every one accepted, indexed, and what the issue asks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contracts.chatshipper import decode_chatshipper
from contracts.envelope import decode_envelope, encode_envelope
from contracts.ingest import natterly_auth_token, parse_webhook
from contracts.natterly import decode_natterly
from tests.kit.goldens import FIXTURES, RECEIVED_AT, all_goldens, golden_id, golden_paths


@pytest.mark.parametrize("item", all_goldens(), ids=golden_id)
def test_every_golden_is_accepted_and_round_trips(item: tuple[str, Path]) -> None:
    provider, path = item
    body = path.read_bytes()
    env = parse_webhook(provider, "golden", body, received_at=RECEIVED_AT)
    assert decode_envelope(encode_envelope(env)) == env
    stored = bytes(env.body)
    assert json.loads(stored) == {k: v for k, v in json.loads(body).items() if k != "auth_token"}
    if provider == "natterly":
        assert natterly_auth_token(body)
        assert natterly_auth_token(stored) is None
        decode_natterly(stored)
    else:
        assert stored == body.strip()
        decode_chatshipper(stored)


def test_goldens_are_plentiful() -> None:
    assert len(golden_paths("natterly")) >= 20
    assert len(golden_paths("chatshipper")) >= 20


def test_index_lists_every_file() -> None:
    index = (FIXTURES / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+\.json)` \|", index, re.MULTILINE))
    on_disk = {path.name for _, path in all_goldens()}
    assert listed == on_disk


def test_edge_cases_are_present() -> None:
    texts = {golden_id(item): item[1].read_bytes() for item in all_goldens()}
    for provider in ("natterly", "chatshipper"):
        mine = {name: text for name, text in texts.items() if name.startswith(provider)}
        assert any(len(text) > 100_000 for text in mine.values()), "a 100 kB message"
        assert any(re.search(rb"[\xf0-\xf4]", text) for text in mine.values()), "emoji in UTF-8"
        assert any(b"\\u" in text for text in mine.values()) or provider == "chatshipper"
        assert any(b"null" in text for text in mine.values())
    assert any(b'"ip_address": "2a02:' in text for text in texts.values()), "IPv6"
