"""The outbox: states committed with the batch that produced them, waiting to be published.

Pure (no I/O). With ``publish=True`` a :class:`~projector.store.Store` writes, in the same
transaction as a batch's rows and offsets, one outbox row for the commit — its random
``token``, the copy, and a reference (kind, id) to each written row, not the states — and returns
the batch's :class:`OutboxEntry` values: the :class:`contracts.state_change.StateChange` of
each row as written, ready to send. The :class:`~projector.state_publisher.StatePublisher`
sends those from memory and then deletes the commit's outbox row by token (the fast path).
Outbox rows a crash left behind are read back with the states their rows hold *now* (the
same or a later committed version), sent, and deleted (the slow path). So nothing
is published before it is committed, and nothing committed is lost.

Versions need the log positions each state covers, and those must survive the process: they
are kept inside the row's ``state`` bytes, ahead of the encoded fold state
(:func:`wrap_state`), so every store keeps them without a schema change and a rebuilt copy
equals the live one byte for byte. State bytes written before positions existed read back
with none.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

import msgspec

from contracts.state_change import encode_state_change
from projector.states import decode_state
from projector.views import Row

__all__ = ["Covers", "OutboxEntry", "covers_of", "decode_refs", "encode_refs", "entry_for",
           "join_covers", "new_token", "unwrap_state", "wrap_state"]

#: Per event-topic partition, the offset of the last record folded into a state, sorted.
Covers = tuple[tuple[str, int, int], ...]

# Wrapped: 0xc1, the covers' length (4 bytes, big-endian), the covers (msgpack), the fold
# state. 0xc1 is the one byte msgpack never uses, and a fold state encodes as a msgpack map:
# wrapped and older, unwrapped bytes are told apart, and the covers are read without parsing
# the state.
_WRAPPED = 0xC1
_ENCODER = msgspec.msgpack.Encoder()
_COVERS = msgspec.msgpack.Decoder(tuple[tuple[str, int, int], ...])


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One state change waiting to be published.

    ``route`` picks the partition (a message goes to its chat's partition of the chat state
    topic); ``key`` is the record key. ``token`` names the commit that wrote it; ``seq`` that
    commit's outbox row, when read back from the store (0 for entries a commit returned). An
    entry read back whose row no longer exists (its copy was dropped) has an empty ``value``.
    ``provider``: of a chat, message or visitor (whose data subject's key seals the published
    value, :mod:`parley.privacy.states`); None for agents, or when the state names none.
    """

    kind: str
    key: str
    route: str
    value: bytes
    token: int = 0
    seq: int = 0
    provider: str | None = None


def wrap_state(state: bytes, covers: Covers) -> bytes:
    """A row's ``state`` bytes: the positions it covers, then the encoded fold state (just
    the fold state when it covers none: what older rows hold)."""
    if not covers:
        return state
    encoded = _ENCODER.encode(covers)
    return b"\xc1" + len(encoded).to_bytes(4, "big") + encoded + state


def unwrap_state(data: bytes) -> tuple[Covers, bytes]:
    """Inverse of :func:`wrap_state`; bytes that were never wrapped cover no positions."""
    if not data or data[0] != _WRAPPED:
        return (), data
    end = 5 + int.from_bytes(data[1:5], "big")
    return _COVERS.decode(data[5:end]), data[end:]


def join_covers(a: Iterable[tuple[str, int, int]], b: Iterable[tuple[str, int, int]]) -> Covers:
    """Positions covered by either (the later offset per partition), sorted."""
    last: dict[tuple[str, int], int] = {}
    for topic, partition, offset in (*a, *b):
        if offset > last.get((topic, partition), -1):
            last[(topic, partition)] = offset
    return covers_of(last)


def covers_of(last: Mapping[tuple[str, int], int]) -> Covers:
    """Sorted covers from a mapping of (topic, partition) to last offset."""
    return tuple(sorted((topic, partition, offset) for (topic, partition), offset in last.items()))


def entry_for(row: Row, token: int = 0, seq: int = 0) -> OutboxEntry:
    """The outbox entry of a committed row: its state change, keyed and routed."""
    covers = row.covers or unwrap_state(row.state)[0]
    route = row.chat_id if row.kind in ("chat", "message") and row.chat_id is not None else row.id
    provider = row.provider if row.provider is not None else _provider_of(row)
    return OutboxEntry(kind=row.kind, key=row.id, route=route, token=token, seq=seq,
                       value=encode_state_change(row.kind, row.id, covers, row.view),
                       provider=provider)


#: The kinds whose states hold a data subject's personal data (docs/privacy.md).
_PERSONAL = frozenset({"chat", "message", "visitor"})


def _provider_of(row: Row) -> str | None:
    """The provider a row read back from a store (the slow path) names in its fold state;
    None for agents, and for a state that does not decode (its value is sent as it is)."""
    if row.kind not in _PERSONAL or not row.state:
        return None
    try:
        return decode_state(row.kind, unwrap_state(row.state)[1]).provider
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


_REFS = msgspec.json.Decoder(list[tuple[str, str]])


def encode_refs(rows: Iterable[Row]) -> bytes:
    """The (kind, id) of each row, as an outbox row keeps them."""
    return msgspec.json.encode([(row.kind, row.id) for row in rows])


def decode_refs(data: bytes) -> list[tuple[str, str]]:
    """Inverse of :func:`encode_refs`."""
    return _REFS.decode(data)


def new_token() -> int:
    """A commit's outbox token: random, so concurrent writers never share one."""
    return secrets.randbits(62) + 1
