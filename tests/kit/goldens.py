"""The golden webhook bodies (tests/fixtures/webhooks/) for the contracts tests, and JSON
mutations of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
PROVIDER_DIRS = ("natterly", "chatshipper")
RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]
PathPart = str | int


def golden_paths(provider: str) -> list[Path]:
    """Golden bodies of one provider, sorted by name."""
    return sorted((FIXTURES / provider).glob("*.json"))


def all_goldens() -> list[tuple[str, Path]]:
    """(provider, path) for every golden body."""
    return [(provider, path) for provider in PROVIDER_DIRS for path in golden_paths(provider)]


def golden_id(item: tuple[str, Path]) -> str:
    """A readable pytest id for ``all_goldens()`` items."""
    return f"{item[0]}/{item[1].name}"


def load(provider: str, name: str) -> bytes:
    """The bytes of one golden body."""
    return (FIXTURES / provider / name).read_bytes()


def json_paths(value: JSON, prefix: tuple[PathPart, ...] = ()) -> Iterator[tuple[PathPart, ...]]:
    """Every path into ``value`` (objects by key, arrays by index), parents first."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from json_paths(child, (*prefix, index))


def get_at(value: JSON, path: tuple[PathPart, ...]) -> JSON:
    """The value at ``path``."""
    for part in path:
        value = value[part]  # type: ignore[index]
    return value


def replace_at(value: JSON, path: tuple[PathPart, ...], new: JSON) -> JSON:
    """A copy of ``value`` with the value at ``path`` replaced by ``new``."""
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    parent = get_at(copy, path[:-1])
    parent[path[-1]] = new  # type: ignore[index]
    return copy  # type: ignore[no-any-return]


def delete_at(value: JSON, path: tuple[PathPart, ...]) -> JSON:
    """A copy of ``value`` without the member or element at ``path`` (non-empty)."""
    copy = json.loads(json.dumps(value))
    parent = get_at(copy, path[:-1])
    del parent[path[-1]]  # type: ignore[union-attr, arg-type]
    return copy  # type: ignore[no-any-return]
