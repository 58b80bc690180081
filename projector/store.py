"""The state store Protocol: what the runner and the query API need from a database.

Every implementation (``memory_store.MemoryStore``, ``sqlite_store.SqliteStore``,
``postgres_store.PostgresStore``) passes the one contract suite in ``tests/kit/store_contract.py``.

Guarantees every implementation gives:

* **Atomic commits.** :meth:`Store.commit` writes all rows *and* all offsets of a batch in
  one transaction: after a crash or an error either the whole batch is visible or none
  of it is. This is what makes the projector's effects exactly-once.
* **An outbox in the same transaction.** ``commit(..., publish=True)`` also appends one
  outbox row for the commit (its new token, the copy, and references to the rows as
  written) and returns the :class:`~projector.outbox.OutboxEntry` of each row as written
  (after any merge; built by :func:`~projector.outbox.entry_for`). :meth:`Store.outbox` reads
  commits back, oldest first, as entries with the states their rows hold when read;
  :meth:`Store.ack_outbox` deletes commits by token. The outbox is one per store, not per
  copy.
* **Isolated projection copies.** Rows and offsets belong to one named projection;
  creating, filling and dropping one copy never changes what another returns.
  :meth:`Store.set_live` switches which copy serves reads in one step.
* **Names ignore case.** Every method takes a projection name through
  :func:`projection_name`: ``V1`` and ``v1`` name the same copy, and every name a store
  returns is in that canonical (lower-case) form. So the live copy cannot be dropped
  under a name that differs only in case (SQLite compares table names ignoring case).
* **Byte-exact views.** Reads return the ``view`` bytes exactly as committed.
* **Bounded reads.** The query API's reads (views, listings, ``counts`` and
  ``live_projection(query=True)``) use connections of their own where a store has
  connections, at most a configured number wait for one, and one more raises
  :class:`~projector.errors.Overloaded` at once; the projector's reads and commits never
  wait behind them.
* **Keyset pagination.** Listings are ordered by ``(Row.sort_key, Row.id)`` ascending;
  a cursor names the last row of the previous page, so rows inserted or changed
  between pages never make a row already listed appear twice or one that kept its
  place be skipped. Cursors are opaque strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec

from projector.errors import InvalidCursor, InvalidProjectionName
from projector.outbox import Covers, OutboxEntry, unwrap_state
from projector.states import AggregateRef
from projector.views import Row

__all__ = [
    "CUSTOMER_TYPE",
    "KINDS",
    "Fingerprint",
    "Store",
    "decode_cursor",
    "encode_cursor",
    "fingerprint",
    "projection_name",
]

#: Aggregate kinds a store holds rows of, in the order ``counts`` reports them.
#: The conversation type of a customer's chat (ChatShipper ``contact``); a chat whose type is
#: unknown (every Natterly chat) counts as one.
CUSTOMER_TYPE = "contact"
KINDS: tuple[str, ...] = ("chat", "message", "visitor", "agent")

_NAME_RULE = "1-64 characters of a-z, A-Z, 0-9 and _ (case is ignored: V1 is v1)"
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_CURSOR = msgspec.json.Decoder(tuple[str, str, str])


class Fingerprint(NamedTuple):
    """One aggregate of a copy, for comparing copies without reading their views: the
    SHA-256 ``digest`` of its stored state bytes (covers included, see
    :func:`~projector.outbox.wrap_state`) and the log positions that state covers."""

    kind: str
    id: str
    digest: bytes
    covers: Covers


def fingerprint(kind: str, id: str, state: bytes) -> Fingerprint:
    """The :class:`Fingerprint` of a stored state (stores without SQL hashing use this)."""
    return Fingerprint(kind, id, hashlib.sha256(state).digest(), unwrap_state(state)[0])


class Store(Protocol):
    """Durable home of folded states, their views and the offsets they reflect."""

    async def open(self) -> None:
        """Create the schema (or migrate it); idempotent."""

    async def close(self) -> None:
        """Release connections and threads; idempotent."""

    async def live_projection(self, *, query: bool = False) -> str | None:
        """Name of the projection that serves reads, or None before the first ``set_live``.

        ``query=True`` is the query API's call: it reads on the API's read connections, like
        the view and listing reads, so the projector's own reads never queue behind them.
        """

    async def create_projection(self, name: str) -> None:
        """Create an empty projection copy; no-op (its rows kept) if it already exists."""

    async def set_live(self, name: str) -> None:
        """Atomically make ``name`` the projection that serves reads (UnknownProjection if absent)."""

    async def drop_projection(self, name: str) -> None:
        """Delete a copy's rows and offsets; no-op if absent; LiveProjectionDrop if it is live.

        The live check and the drop are one step: the live copy is never dropped, whatever
        case its name is given in.
        """

    async def list_projections(self) -> list[str]:
        """Canonical names of all projection copies, sorted."""

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        """Encoded fold states of those ``refs`` that exist (one query per kind, not per ref)."""

    async def commit(
        self, projection: str, rows: Sequence[Row], offsets: Mapping[tuple[str, int], int],
        *, publish: bool = False,
    ) -> list[OutboxEntry]:
        """In ONE transaction: upsert ``rows`` and set each (topic, partition)'s NEXT offset,
        and with ``publish`` append an outbox row per written row; the written rows' outbox
        entries (all with the commit's token), empty without ``publish``.

        A later row for the same (kind, id) in ``rows`` wins. Offsets of partitions not in
        ``offsets`` are left as they are. Raises StoreUnavailable (retriable; nothing
        written) when the database is busy.
        """

    async def outbox(self, limit: int) -> list[OutboxEntry]:
        """The entries of the oldest commits in the outbox, whole commits, stopping once
        ``limit`` entries are reached: each with its commit's ``seq`` and ``token`` and the
        state its row holds now (an empty ``value`` if the row or its copy is gone)."""

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        """Delete the outbox rows of the commits ``tokens`` (published); unknown ones are
        ignored."""

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        """The next offset to read of every (topic, partition) committed to this projection."""

    async def get_view(self, projection: str, kind: str, id: str) -> bytes | None:
        """The stored view of one aggregate, or None."""

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
        """A page of chat views (most recent activity first) and the cursor of the next page.

        The cursor is None when this page is the last. Filters compare exactly, except
        ``chat_type`` (the view's ``type``): :data:`CUSTOMER_TYPE` also matches chats with no
        type (Natterly's, or a type never said).
        """

    async def list_messages(
        self, projection: str, chat_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        """A page of one chat's message views (by posted time, then id) and the next cursor."""

    async def list_log(
        self, projection: str, kind: str, id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        """A page of one chat's or agent's (``kind``) log index (:mod:`projector.log_index`:
        each view a position as a JSON string), oldest record first, and the next cursor.
        Read like messages: a range of the primary key, never a scan."""

    async def list_agents(self, projection: str) -> list[bytes]:
        """Every agent view, ordered by agent id."""

    async def counts(self, projection: str) -> dict[str, int]:
        """Number of rows per kind (every kind in :data:`KINDS`, zeros included)."""

    async def fingerprints(self, projection: str, *, after: tuple[str, str] | None = None,
                           limit: int = 10_000) -> list[Fingerprint]:
        """A page of the copy's aggregates as :class:`Fingerprint`, at most ``limit``, ordered
        by ``(kind, id)`` in code-point order (Python's string order), starting after the key
        ``after``: pass the last one back for the next page; an empty page is the end."""

    async def set_verification(self, name: str, summary: str) -> None:
        """Keep ``summary`` (the JSON of a rebuild's verification) with the copy ``name``,
        replacing any before; dropping the copy deletes it (UnknownProjection if absent)."""

    async def verifications(self) -> dict[str, str]:
        """The kept verification summary of every copy that has one, by copy name."""


def projection_name(name: str) -> str:
    """The canonical form of a projection name: ``name`` in lower case.

    Raises InvalidProjectionName (whose message states the rule) unless ``name`` is
    1-64 characters of ``[A-Za-z0-9_]``. The name becomes part of table names, and SQLite
    compares table names ignoring case, so every store compares (and stores) names in this
    one form; the CLI and rebuilds compare with the live copy's name in it too.
    """
    if not _NAME.fullmatch(name):
        shown = repr(name) if len(name) <= 70 else f"{name[:64]!r}... ({len(name)} characters)"
        raise InvalidProjectionName(f"projection name {shown} is invalid: use {_NAME_RULE}")
    return name.lower()


def encode_cursor(listing: str, sort_key: str, id: str) -> str:
    """Opaque cursor naming the last row of a page of ``listing`` ("chats", "messages")."""
    raw = msgspec.json.encode((listing, sort_key, id))
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(listing: str, cursor: str) -> tuple[str, str]:
    """The (sort_key, id) a cursor of ``listing`` names; InvalidCursor if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, sort_key, id = _CURSOR.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidCursor("cursor is not valid: pass back the cursor of the previous page") from None
    if kind != listing:
        raise InvalidCursor(f"cursor belongs to another listing ({kind!r}, not {listing!r})")
    return sort_key, id
