"""Upcasters: how envelopes written by older schema versions are read today.

Evolution policy (docs/contracts.md): a new field gets a default, so old records
decode unchanged; a field is never retyped; a field is renamed (or reshaped)
only by adding an upcaster here and bumping ``SCHEMA_VERSION``.

An upcaster takes the record's top-level members as raw JSON
(``dict[str, msgspec.Raw]``) and returns the members of the next version. It
works on raw members so that ``body`` is carried through byte-exact: nothing
is decoded unless the upcaster itself needs it. :data:`ENVELOPE_UPCASTERS`
maps a version to the upcaster that lifts it to version + 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import msgspec

from contracts.errors import ContractError

__all__ = ["ENVELOPE_UPCASTERS", "SCHEMA_VERSION", "Members", "Upcaster", "rename", "upcast"]

#: The envelope schema version this code writes.
SCHEMA_VERSION = 1

Members = dict[str, msgspec.Raw]
Upcaster = Callable[[Members], Members]


def rename(members: Members, old: str, new: str) -> Members:
    """Members with ``old`` renamed to ``new`` (absent ``old``: unchanged)."""
    if old not in members:
        return members
    return {(new if key == old else key): value for key, value in members.items()}


def _v0_to_v1(members: Members) -> Members:
    """v0 → v1: ``kind`` became ``aggregate`` and ``payload`` became ``body``.

    No release ever wrote v0; this is the worked example of the mechanism (and
    is tested), kept so the next real rename has a template to copy.
    """
    return rename(rename(members, "kind", "aggregate"), "payload", "body")


#: ``version → upcaster to version + 1``; read-only.
ENVELOPE_UPCASTERS: Mapping[int, Upcaster] = MappingProxyType({0: _v0_to_v1})


def upcast(
    members: Members,
    version: int,
    *,
    target: int = SCHEMA_VERSION,
    upcasters: Mapping[int, Upcaster] = ENVELOPE_UPCASTERS,
) -> Members:
    """Lift ``members`` of schema ``version`` to ``target`` one version at a time.

    ``schema_version`` is rewritten after each step. Raises ContractError when
    no upcaster exists for a step (including any version newer than ``target``,
    which only a newer Parley can read).
    """
    if version > target:
        raise ContractError(
            f"envelope schema_version {version} is newer than {target}; upgrade Parley to read it",
            "$.schema_version",
        )
    while version < target:
        step = upcasters.get(version)
        if step is None:
            raise ContractError(f"no upcaster from envelope schema_version {version}", "$.schema_version")
        members = step(dict(members))
        version += 1
        members["schema_version"] = msgspec.Raw(str(version).encode())
    return members
