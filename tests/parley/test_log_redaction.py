"""The log formatter masks every configured secret in whatever form it reaches the rendered
line (issue 16, hole 15): JSON escaping turned a secret holding ``"`` or ``\\`` into a
different string, and the plain replacement missed it."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from parley.logs import JsonFormatter

SECRETS = [
    'tok"quote"-0123456789abcdef',
    "tok\\back\\slash-0123456789ab",
    "tök-ünïcødé-ключ-秘密-0123456789",
    "tok-new\nline-and\ttab-0123456789",
    "tok-\x01control\x7f-0123456789ab",
    "tok-'single'-and-\"double\"-\\-é",
]


class Opaque:
    """An object logged in ``extra``: rendered through ``str()``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"Opaque({self.text})"


def records(secret: str) -> list[logging.LogRecord]:
    def make(msg: str, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
        record = logging.LogRecord("parley.test", logging.WARNING, __file__, 1, msg, args, None)
        record.__dict__.update(extra)
        return record

    out = [
        make("plain %s end", (secret,)),
        make("repr %r end", (secret,)),
        make(f"inline {secret} end"),
        make("extra", detail=secret),
        make("extra list", items=[secret, 1]),
        make("extra dict", table={"key": secret}),
        make("extra bytes", raw=secret.encode()),
        make("extra object", thing=Opaque(secret)),
        make("extra json", body=orjson.dumps({"auth_token": secret}).decode()),
    ]
    try:
        raise ValueError(f"failed with {secret}")
    except ValueError:
        with_exc = make("exception")
        with_exc.exc_info = sys.exc_info()
        out.append(with_exc)
    return out


def leaks(secret: str, line: str) -> list[str]:
    """Where ``secret`` can still be read in a rendered line: the raw text, or any string in
    the decoded JSON, in any of the spellings a reader could undo."""
    spellings = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], repr(secret.encode())[2:-1],
                 orjson.dumps(secret).decode()[1:-1]}

    def strings(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    texts = [line, *strings(orjson.loads(line))]
    return [f"{form!r} in {text!r}" for text in texts for form in spellings if form in text]


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_every_form_of_a_secret_is_masked(secret: str) -> None:
    formatter = JsonFormatter([secret, "other-secret-0123456789"])
    for record in records(secret):
        line = formatter.format(record)
        assert "***" in line, line
        assert leaks(secret, line) == [], line
        assert "\n" not in line  # still one line


def test_a_secret_inside_another_is_masked_whole() -> None:
    short, long = "abcdef-0123456789", "abcdef-0123456789-and-more"
    line = JsonFormatter([short, long]).format(
        logging.LogRecord("t", logging.INFO, __file__, 1, "x %s y", (long,), None))
    assert "and-more" not in line and orjson.loads(line)["msg"] == "x *** y"


def test_without_secrets_nothing_changes() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, 'say "hi" \\ there', (), None)
    assert orjson.loads(JsonFormatter().format(record))["msg"] == 'say "hi" \\ there'
