"""Compare a rebuilt copy with the live one before reads switch to it (``parley projections
rebuild``, see docs/projector.md "Rebuilds").

The live copy keeps folding while a rebuild runs, so the two copies have applied different
stretches of the log. The rule: per event partition the *horizon* is the lower of the two
copies' stored next offsets (the live copy's read before its rows, so it can only be
lower than what the rows reflect). An aggregate is **comparable** when neither copy's
state of it covers a log position at or past the horizon: then both states were folded
from exactly the same records (a state's covers name the last record of each partition
folded into it, :mod:`projector.outbox`). Comparable aggregates either hold the same state
bytes (``same``) or ``differ`` (a missing row on one side differs too). An aggregate one copy
folded past the horizon is ``newer in live`` or ``newer in new``: not a difference.

Row counts per kind of both copies are reported beside (they differ by the aggregates one
copy has folded and the other not yet). The copies are read in pages, merged by key:
memory stays bounded whatever their size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from projector.store import KINDS, Fingerprint, Store

__all__ = ["Example", "Verification", "describe", "verify"]

#: How many differing aggregates a summary shows, and how much of each view.
EXAMPLES = 3
_VIEW_CHARS = 400


class Example(msgspec.Struct, frozen=True, kw_only=True):
    """A differing aggregate and its views in both copies (None: no row there; views are
    cut at a few hundred characters)."""

    kind: str
    id: str
    live: str | None
    new: str | None


class Verification(msgspec.Struct, kw_only=True):
    """What comparing the ``new`` copy with the ``live`` one found (kept with the new copy)."""

    live: str
    new: str
    compared: int = 0
    same: int = 0
    differ: int = 0
    newer_in_live: int = 0
    newer_in_new: int = 0
    differ_by_kind: dict[str, int] = msgspec.field(default_factory=dict)
    counts_live: dict[str, int] = msgspec.field(default_factory=dict)
    counts_new: dict[str, int] = msgspec.field(default_factory=dict)
    examples: list[Example] = msgspec.field(default_factory=list)
    #: Switched despite differences (``--accept-changes``).
    accepted: bool = False

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, text: str) -> Verification:
        return msgspec.json.decode(text, type=cls)


async def verify(store: Store, live: str, new: str, *, page: int = 10_000) -> Verification:
    """Compare copy ``new`` (no longer written) with ``live`` (maybe still being written)."""
    live_offsets = await store.offsets(live)  # before the rows: see the module docstring
    new_offsets = await store.offsets(new)
    horizon = {tp: min(off, new_offsets.get(tp, 0)) for tp, off in live_offsets.items()}
    result = Verification(live=live, new=new, counts_live=await store.counts(live))
    result.counts_new = await store.counts(new)
    differing: list[tuple[str, str]] = []

    def past(fp: Fingerprint) -> bool:
        return any(offset >= horizon.get((topic, partition), 0) for topic, partition, offset in fp.covers)

    old_rows, new_rows = _pages(store, live, page), _pages(store, new, page)
    a, b = await anext(old_rows, None), await anext(new_rows, None)
    while a is not None or b is not None:
        if b is None or (a is not None and (a.kind, a.id) < (b.kind, b.id)):
            assert a is not None
            pair: tuple[Fingerprint | None, Fingerprint | None] = (a, None)
            a = await anext(old_rows, None)
        elif a is None or (b.kind, b.id) < (a.kind, a.id):
            pair = (None, b)
            b = await anext(new_rows, None)
        else:
            pair = (a, b)
            a, b = await anext(old_rows, None), await anext(new_rows, None)
        old, fresh = pair
        if old is not None and fresh is not None and old.digest == fresh.digest:
            result.compared += 1
            result.same += 1
        elif old is not None and past(old):
            result.newer_in_live += 1
        elif fresh is not None and past(fresh):
            result.newer_in_new += 1
        else:
            some = old or fresh
            assert some is not None
            result.compared += 1
            result.differ += 1
            result.differ_by_kind[some.kind] = result.differ_by_kind.get(some.kind, 0) + 1
            if len(differing) < EXAMPLES:
                differing.append((some.kind, some.id))
    result.examples = [Example(kind=kind, id=id, live=_cut(await store.get_view(live, kind, id)),
                               new=_cut(await store.get_view(new, kind, id)))
                       for kind, id in differing]
    return result


def describe(v: Verification) -> list[str]:
    """The summary as lines: totals, row counts per kind, the examples with both versions."""

    def counts(c: dict[str, int]) -> str:
        return " ".join(f"{kind}={c.get(kind, 0)}" for kind in KINDS)

    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(v.differ_by_kind.items()))
    lines = [f"verified {v.new} against {v.live}: {v.compared} aggregates compared, {v.differ} "
             f"differ{f' ({by_kind})' if by_kind else ''}, {v.newer_in_live} newer in "
             f"{v.live}, {v.newer_in_new} newer in {v.new} (not comparable)"
             + ("; switched with --accept-changes" if v.accepted else ""),
             f"  rows {v.live}: {counts(v.counts_live)}",
             f"  rows {v.new}: {counts(v.counts_new)}"]
    for ex in v.examples:
        lines.append(f"  differs: {ex.kind} {ex.id!r}")
        lines.append(f"    {v.live}: {ex.live if ex.live is not None else '(no row)'}")
        lines.append(f"    {v.new}: {ex.new if ex.new is not None else '(no row)'}")
    return lines


async def _pages(store: Store, projection: str, size: int) -> AsyncIterator[Fingerprint]:
    after: tuple[str, str] | None = None
    while True:
        rows = await store.fingerprints(projection, after=after, limit=size)
        for row in rows:
            yield row
        if len(rows) < size:
            return
        after = (rows[-1].kind, rows[-1].id)


def _cut(view: bytes | None) -> str | None:
    if view is None:
        return None
    text = view.decode("utf-8", "replace")
    return text if len(text) <= _VIEW_CHARS else f"{text[:_VIEW_CHARS]}… ({len(text)} characters)"
