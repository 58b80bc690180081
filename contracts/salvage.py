"""Field by field: decode what can be decoded of a body whose typed decode failed.

A provider body the receiver accepted may hold one value of an unexpected type deep
inside (a number where a string was documented, a malformed time). Rather than lose the
whole webhook's meaning, :func:`salvage` removes the offending value — the field, or the
list element — and decodes again, until the rest decodes or nothing is left to remove.
Each removal is reported as a field path without list indexes (``payload.messages[].text``),
a label of bounded variety, so the caller can count and log it. Only the failure path pays
for this: a body that decodes is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from contracts.errors import ContractError

__all__ = ["MAX_DROPS", "field_label", "salvage"]

T = TypeVar("T")
#: Removals tried per body before giving up on it (a body wrong everywhere is not worth more).
MAX_DROPS = 16
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def field_label(path: str) -> str:
    """``$.payload.messages[3].text`` → ``payload.messages[].text`` (``$`` stays ``$``)."""
    if path == "$":
        return path
    return re.sub(r"\[\d+\]", "[]", path.removeprefix("$.").removeprefix("$"))


def salvage(body: bytes, decode: Callable[[bytes], T], dropped: list[str],
            accept: Callable[[Any], bool] = lambda doc: True) -> T | None:
    """``decode(body)`` after removing the values it rejects, one at a time; None when the
    body is not a JSON object, ``accept(document)`` says it is not worth it, or more than
    :data:`MAX_DROPS` removals would be needed (then ``$`` is reported: nothing was used).
    Each removed value's :func:`field_label` is appended to ``dropped``."""
    try:
        doc = _ANY.decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not accept(doc):
        return None
    removed: list[str] = []
    for _ in range(MAX_DROPS):
        try:
            result = decode(_ENCODER.encode(doc))
        except ContractError as exc:
            if not _remove(doc, exc.path):
                break
            removed.append(field_label(exc.path))
            continue
        dropped.extend(removed)
        return result
    dropped.append("$")
    return None


def _remove(doc: Any, path: str) -> bool:
    """Remove the value at ``path`` from ``doc``; False if there is none (or it is ``$``)."""
    steps: list[str | int] = [key if key else int(index) for key, index in _SEGMENT.findall(path)]
    if not steps:
        return False
    parent = doc
    for step in steps[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return False
    last = steps[-1]
    if isinstance(parent, dict) and isinstance(last, str) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        del parent[last]
        return True
    return False
