"""An in-memory :class:`~projector.store.Store`: the twin of the SQLite store for unit tests.

It keeps the same promises (it passes the same contract suite): commits are atomic —
a failure part-way undoes the rows already written — copies are isolated, listings
are keyset-paginated. Nothing survives the process, so ``parley run`` never uses it;
``open_store("memory://")`` gives one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from parley.errors import StoreError
from projector import rollups
from projector.errors import LiveProjectionDrop, UnknownProjection
from projector.log_index import INDEXED, LOG_KINDS
from projector.outbox import OutboxEntry, entry_for, new_token
from projector.states import AggregateRef
from projector.store import (
    CUSTOMER_TYPE,
    KINDS,
    Fingerprint,
    decode_cursor,
    encode_cursor,
    fingerprint,
    projection_name,
)
from projector.views import Row

__all__ = ["MemoryStore"]


class _Copy:
    """One projection copy: rows by (kind, id) and next offsets by (topic, partition)."""

    __slots__ = ("moves", "offsets", "rows", "verification")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.verification: str | None = None
        #: Every agent row's moves of online time committed (deltas: not a row's state).
        self.moves: list[tuple[str, bytes]] = []


class MemoryStore:
    """Dict-backed store. Not thread-safe; use from one event loop."""

    def __init__(self) -> None:
        self._copies: dict[str, _Copy] = {}
        self._live: str | None = None
        self._closed = False
        self._outbox: dict[int, tuple[int, str, list[tuple[str, str]]]] = {}  # seq: token, copy, refs
        self._seq = 0

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _copy(self, name: str) -> _Copy:
        if self._closed:
            raise StoreError("the store is closed")
        name = projection_name(name)
        try:
            return self._copies[name]
        except KeyError:
            raise UnknownProjection(f"projection {name!r} does not exist") from None

    async def live_projection(self, *, query: bool = False) -> str | None:
        return self._live

    async def create_projection(self, name: str) -> None:
        self._copies.setdefault(projection_name(name), _Copy())

    async def set_live(self, name: str) -> None:
        self._copy(name)
        self._live = projection_name(name)

    async def drop_projection(self, name: str) -> None:
        name = projection_name(name)
        if name == self._live:
            raise LiveProjectionDrop.of(name)
        self._copies.pop(name, None)

    async def list_projections(self) -> list[str]:
        return sorted(self._copies)

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        rows = self._copy(projection).rows
        found: dict[AggregateRef, bytes] = {}
        for ref in refs:
            row = rows.get((ref.kind, ref.id))
            if row is not None:
                found[ref] = row.state
        return found

    async def commit(
        self, projection: str, rows: Sequence[Row], offsets: Mapping[tuple[str, int], int],
        *, publish: bool = False,
    ) -> list[OutboxEntry]:
        copy = self._copy(projection)
        name = projection_name(projection)
        undo: dict[tuple[str, str], Row | None] = {}
        token = new_token() if publish else 0
        try:
            for row in rows:
                key = (row.kind, row.id)
                if key not in undo:
                    undo[key] = copy.rows.get(key)
                copy.rows[key] = row
            self._write_offsets(copy, offsets)
            copy.moves += [(row.id, row.fact) for row in rows if row.kind == "agent" and row.fact]
            if publish:
                self._seq += 1
                self._outbox[self._seq] = (token, name, [(row.kind, row.id) for row in rows
                                                         if row.kind not in LOG_KINDS])
        except BaseException:
            # Atomicity: put back every row this commit touched, as it was.
            for key, old in undo.items():
                if old is None:
                    del copy.rows[key]
                else:
                    copy.rows[key] = old
            raise
        return [entry_for(row, token) for row in rows if row.kind not in LOG_KINDS] if publish else []

    def _write_offsets(self, copy: _Copy, offsets: Mapping[tuple[str, int], int]) -> None:
        """The last step of a commit (a separate method so tests can make it fail)."""
        staged = {(str(topic), int(partition)): int(offset) for (topic, partition), offset in offsets.items()}
        copy.offsets.update(staged)

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        return dict(self._copy(projection).offsets)

    async def outbox(self, limit: int) -> list[OutboxEntry]:
        if self._closed:
            raise StoreError("the store is closed")
        out: list[OutboxEntry] = []
        for seq, (token, name, refs) in self._outbox.items():
            if len(out) >= limit:
                break
            copy = self._copies.get(name)
            for kind, id in refs:
                row = None if copy is None else copy.rows.get((kind, id))
                out.append(entry_for(row, token, seq) if row is not None else OutboxEntry(
                    kind=kind, key=id, route=id, value=b"", token=token, seq=seq))
        return out

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        gone = set(tokens)
        for seq in [s for s, entry in self._outbox.items() if entry[0] in gone]:
            del self._outbox[seq]

    async def get_view(self, projection: str, kind: str, id: str) -> bytes | None:
        row = self._copy(projection).rows.get((kind, id))
        return None if row is None else row.view

    async def list_chats(
        self,
        projection: str,
        *,
        status: str | None = None,
        source: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        chat_type: str | None = None,
    ) -> tuple[list[bytes], str | None]:
        rows = (
            row
            for row in self._copy(projection).rows.values()
            if row.kind == "chat"
            and (status is None or row.status == status)
            and (source is None or row.source == source)
            and (agent is None or row.agent_id == agent)
            and (chat_type is None or _chat_type(row.view) == chat_type)
        )
        return _page("chats", rows, limit, cursor)

    async def list_messages(
        self, projection: str, chat_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        rows = (
            row
            for row in self._copy(projection).rows.values()
            if row.kind == "message" and row.chat_id == chat_id
        )
        return _page("messages", rows, limit, cursor)

    async def list_log(
        self, projection: str, kind: str, id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        rows = (row for row in self._copy(projection).rows.values()
                if row.kind == INDEXED[kind] and row.chat_id == id)
        return _page("log", rows, limit, cursor)

    async def list_agents(self, projection: str) -> list[bytes]:
        agents = [row for row in self._copy(projection).rows.values() if row.kind == "agent"]
        return [row.view for row in sorted(agents, key=lambda row: row.id)]

    async def report_tallies(self, projection: str, dim: str,
                             reads: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, str, bytes]]:
        # Summed from the chats' facts on each read (the SQL stores keep the sums): the
        # same tallies, by definition, for a store that lives in one test.
        chats = [(row.id, row.fact) for row in self._copy(projection).rows.values()
                 if row.kind == "chat"]
        copy = self._copy(projection)
        _, deltas = rollups.changes({}, chats, copy.moves)
        summed = rollups.merge({}, deltas)
        return [(grain, period, value, blob)
                for (grain, d, value, period), blob in sorted(summed.items())
                if blob and d == dim and any(g == grain and first <= period <= last
                                    for g, first, last in reads)]

    async def report_live(self, projection: str) -> tuple[int, int | None, dict[str, int]]:
        waiting, since, agents = 0, None, dict[str, int]()
        for row in self._copy(projection).rows.values():
            if row.kind != "chat":
                continue
            if row.status == "waiting":
                waiting += 1
                if row.waiting_since is not None:
                    since = row.waiting_since if since is None else min(since, row.waiting_since)
            elif row.status in ("active", "idle") and row.agent_id is not None:
                agents[row.agent_id] = agents.get(row.agent_id, 0) + 1
        return waiting, since, agents

    async def counts(self, projection: str) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for kind, _ in self._copy(projection).rows:
            if kind not in LOG_KINDS:  # the index is no state
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    async def fingerprints(self, projection: str, *, after: tuple[str, str] | None = None,
                           limit: int = 10_000) -> list[Fingerprint]:
        rows = self._copy(projection).rows
        keys = sorted(key for key in rows
                      if (after is None or key > after) and key[0] not in LOG_KINDS)[:limit]
        return [fingerprint(kind, id, rows[(kind, id)].state) for kind, id in keys]

    async def set_verification(self, name: str, summary: str) -> None:
        self._copy(name).verification = summary

    async def verifications(self) -> dict[str, str]:
        return {name: copy.verification for name, copy in self._copies.items()
                if copy.verification is not None}


def _page(
    listing: str, rows: Iterable[Row], limit: int, cursor: str | None
) -> tuple[list[bytes], str | None]:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    ordered = sorted(rows, key=lambda row: (row.sort_key, row.id))
    if cursor is not None:
        after = decode_cursor(listing, cursor)
        ordered = [row for row in ordered if (row.sort_key, row.id) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    next_cursor = encode_cursor(listing, page[-1].sort_key, page[-1].id) if more else None
    return [row.view for row in page], next_cursor


class _Typed(msgspec.Struct):
    type: str | None = None


def _chat_type(view: bytes) -> str:
    """The view's ``type``, :data:`CUSTOMER_TYPE` when it has none."""
    return msgspec.json.decode(view, type=_Typed).type or CUSTOMER_TYPE
