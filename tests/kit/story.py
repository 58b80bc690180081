"""Provider stories: a TOML file of webhooks, in delivery order, and the state expected after.

A story file (``tests/system/stories/<provider>/<name>.toml``) has:

- ``intent``: one sentence (the file's comment header says more);
- ``source``: the webhook source it is posted to (``natterly`` or ``chatshipper``, both
  configured by the runner);
- ``[[webhook]]``: ``body`` (the JSON exactly as the provider POSTs it), optional ``note``
  and ``delay_s`` (a pause before posting it: a provider that delivers later);
- ``[[chat]]``, ``[[visitor]]``, ``[[agent]]``: ``id`` and the fields expected of
  ``GET /api/chats/{id}``, ``/api/visitors/{id}`` and ``/api/agents``' item; nested tables
  match the fields they name, a list matches item by item; ``null = ["field", …]`` names
  fields that must be null or absent;
- ``[[messages]]``: ``chat`` and ``items``, matched in order against
  ``GET /api/chats/{chat}/messages`` (each item names only the fields it checks);
- ``[[chats]]``: ``query`` (the parameters of ``GET /api/chats``), ``listed`` and
  ``unlisted`` chat ids;
- ``[[search]]``: ``q``, ``hits`` and ``misses`` (chat ids) of ``GET /api/search``;
- ``[[crm]]``: ``chat`` and the fields of its activity in the CRM stand-in,
  ``transcript_has`` and ``transcript_lacks`` (texts).

Only the fields a story names are compared. Every UUID and 24-hex id in a story is replaced,
consistently, by one unique to the run (:meth:`Story.with_fresh_ids`), so stories never meet
in the shared broker, store, search index or CRM.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["STORIES", "Story", "Webhook", "mismatches"]

STORIES = Path(__file__).resolve().parents[1] / "system" / "stories"

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_OBJECT_ID = re.compile(r"\b[0-9a-f]{24}\b")
_SECTIONS = ("chat", "visitor", "agent", "messages", "chats", "search", "crm")


@dataclass(frozen=True)
class Webhook:
    body: str
    note: str = ""
    delay_s: float = 0.0


@dataclass(frozen=True)
class Story:
    name: str  # "<provider dir>/<file stem>"
    intent: str
    source: str
    webhooks: tuple[Webhook, ...]
    expect: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: fresh id → the id written in the story file (see :meth:`with_fresh_ids`)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Story:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        unknown = set(doc) - {"intent", "source", "webhook", *_SECTIONS}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(name=f"{path.parent.name}/{path.stem}", intent=doc["intent"],
                   source=doc["source"],
                   webhooks=tuple(Webhook(**w) for w in doc["webhook"]),
                   expect={s: doc.get(s, []) for s in _SECTIONS})

    def with_fresh_ids(self, salt: str) -> Story:
        """This story with every UUID and 24-hex id replaced by one derived from ``salt``."""
        aliases: dict[str, str] = {}

        def fresh_uuid(m: re.Match[str]) -> str:
            fresh = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{salt}:{m.group(0)}"))
            aliases[fresh] = m.group(0)
            return fresh

        def fresh_object_id(m: re.Match[str]) -> str:
            fresh = hashlib.sha1(f"{salt}:{m.group(0)}".encode(), usedforsecurity=False
                                 ).hexdigest()[:24]
            aliases[fresh] = m.group(0)
            return fresh

        def text(s: str) -> str:
            return _OBJECT_ID.sub(fresh_object_id, _UUID.sub(fresh_uuid, s))

        def deep(value: Any) -> Any:
            if isinstance(value, str):
                return text(value)
            if isinstance(value, list):
                return [deep(v) for v in value]
            if isinstance(value, dict):
                return {k: deep(v) for k, v in value.items()}
            return value

        return replace(self, webhooks=tuple(replace(w, body=text(w.body)) for w in self.webhooks),
                       expect=deep(self.expect), aliases=aliases)

    def as_written(self, text: str) -> str:
        """``text`` with this run's fresh ids put back as the story file writes them."""
        for fresh, original in self.aliases.items():
            text = text.replace(fresh, original)
        return text


def mismatches(expected: Any, got: Any, path: str, nulls: tuple[str, ...] = ()) -> list[str]:
    """Each way ``got`` differs from ``expected`` in the fields ``expected`` names, as
    ``path: expected X, got Y``; ``nulls`` are fields that must be null or absent."""
    out: list[str] = []
    for name in nulls:
        value = got.get(name) if isinstance(got, dict) else None
        if value is not None:
            out.append(f"{path}.{name}: expected null, got {value!r}")
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [*out, f"{path}: expected an object with {expected!r}, got {got!r}"]
        for key, want in expected.items():
            if key == "null":
                continue
            inner_nulls = tuple(want.get("null", ())) if isinstance(want, dict) else ()
            out += mismatches(want, got.get(key), f"{path}.{key}", inner_nulls)
        return out
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [*out, f"{path}: expected {len(expected)} items {expected!r}, got {got!r}"]
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            inner_nulls = tuple(want.get("null", ())) if isinstance(want, dict) else ()
            out += mismatches(want, have, f"{path}[{i}]", inner_nulls)
        return out
    if expected != got:
        out.append(f"{path}: expected {expected!r}, got {got!r}")
    return out
