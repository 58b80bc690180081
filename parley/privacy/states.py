"""Sealing the personal parts of a state-topic value, and opening them again.

The projector publishes every committed state on a compacted state topic
(:mod:`contracts.state_change`). With encryption on, a value whose state holds personal data
keeps only the state's **facts** readable, the same facts an erasure keeps
(:mod:`projector.erasure`), and carries the whole state sealed under its data subject's key,
with the same sealing the receiver uses (:func:`parley.privacy.seal.seal_body`, through the
process's :class:`~parley.privacy.ring.KeyRing`)::

    {"kind":…,"id":…,"version":…,"positions":[…],"state":<facts>,"subject":…,"sealed":"<base64>"}

A reader without the key (or once the key is destroyed) sees the facts: a valid state change,
so old readers and filters on ids, status, source, times and counts keep working. A reader
with the key restores the value byte for byte as it was before sealing (:func:`open_state`).
Values written before sealing (or without it) have no ``sealed`` and are read as they are.

Personal parts, per kind: a chat's ``subject``, ``location`` and ``visitor.name``; a
message's ``text`` and ``author.name``; a visitor's ``name``, ``email`` and ``pages``.
Agents are staff, not data subjects: their states stay as they are. A state with none of
these (an erased one, a chat without a visitor name yet) is published as it is.

The subject is the aggregate's (:func:`state_subject`): a chat's and its messages' states are
sealed with the chat's key, a visitor's with the visitor's, so the keys ``parley visitors
forget`` destroys make them unreadable too. The associated data binds the sealed state to its
kind, id and version: it opens in no other record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from contracts.envelope import Envelope
from contracts.topics import EventTopicKind
from parley.privacy.ring import KeyRing
from parley.privacy.subjects import subject_of

__all__ = ["StateSealer", "is_sealed", "open_state", "seal_state", "state_facts",
           "state_subject"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SOURCE = "parley.state"  # the envelope's source: fixed, never a configured source's name
_TREE = msgspec.json.Decoder(dict[str, Any])
_json = msgspec.json.encode


class _Wire(msgspec.Struct, frozen=True):
    kind: str
    id: str
    version: int
    positions: msgspec.Raw
    state: msgspec.Raw
    subject: str | msgspec.UnsetType = msgspec.UNSET
    sealed: bytes | msgspec.UnsetType = msgspec.UNSET


_WIRE = msgspec.json.Decoder(_Wire)


def state_subject(kind: str, id: str, provider: str | None) -> str | None:
    """The data subject whose key seals a state of ``kind`` ``id`` from ``provider``: the
    chat's for a chat and its messages, the visitor's for a visitor; None for an agent (and
    for a state of no known provider: nothing was sealed for it)."""
    if provider is None:
        return None
    if kind == "chat":
        return subject_of(provider, "chat", id)
    if kind == "message":
        return subject_of(provider, "chat", id.partition("/")[0])
    if kind == "visitor":
        return subject_of(provider, "visitor", id)
    return None


def _nameless(tree: dict[str, Any], member: str) -> bool:
    """Drop the ``name`` of ``tree[member]``; whether it had one."""
    ref = tree.get(member)
    if isinstance(ref, dict) and ref.get("name") is not None:
        ref["name"] = None
        return True
    return False


def state_facts(kind: str, state: bytes) -> bytes | None:
    """The JSON of ``state`` (a state of ``kind``) without its personal parts; None if it
    has none (nothing to seal)."""
    if kind not in ("chat", "message", "visitor"):
        return None
    tree = _TREE.decode(state)
    personal: tuple[str, ...]
    if kind == "chat":
        personal = ("subject", "location")
        named = _nameless(tree, "visitor")
    elif kind == "message":
        personal = ("text",)
        named = _nameless(tree, "author")
    else:
        personal = ("name", "email", "pages")
        named = False
    dropped = [p for p in personal if tree.get(p)]
    for p in dropped:
        tree[p] = [] if p == "pages" else None
    return _json(tree) if dropped or named else None


#: What every state's envelope shares; :func:`_envelope` fills in the rest.
_TEMPLATE = Envelope(event_id="state", provider="parley", source=_SOURCE,
                     event_type="parley.state", aggregate="chat", key="state",
                     occurred_at=_EPOCH, received_at=_EPOCH, body=msgspec.Raw(b"{}"))


def _envelope(wire: _Wire, subject: str, body: bytes,
              sealed: bytes | msgspec.UnsetType = msgspec.UNSET) -> Envelope:
    """The envelope a state is sealed and opened as: the same fields on both sides, so the
    seal's associated data (subject, event id, source) binds it to kind, id and version."""
    aggregate: EventTopicKind = "visitor" if wire.kind == "visitor" else "chat"
    return msgspec.structs.replace(
        _TEMPLATE, event_id=f"state:{wire.kind}:{wire.id}:{wire.version}",
        provider=subject.partition(":")[0], aggregate=aggregate, key=wire.id.partition("/")[0],
        body=msgspec.Raw(body), subject=subject, sealed=sealed)


def _value(wire: _Wire, state: bytes, tail: bytes = b"") -> bytes:
    return (b'{"kind":%b,"id":%b,"version":%d,"positions":%b,"state":%b%b}'
            % (_json(wire.kind), _json(wire.id), wire.version, wire.positions, state, tail))


class _Plan(NamedTuple):
    """A state value to seal: its parts, its subject and its facts."""

    wire: _Wire
    subject: str
    facts: bytes


def _plan(value: bytes, provider: str | None) -> _Plan | None:
    """What sealing ``value`` takes; None if there is nothing to seal (no subject, no
    personal part, or sealed already)."""
    wire = _WIRE.decode(value)
    subject = state_subject(wire.kind, wire.id, provider)
    if subject is None or not isinstance(wire.sealed, msgspec.UnsetType):
        return None
    facts = state_facts(wire.kind, wire.state)
    return None if facts is None else _Plan(wire, subject, facts)


def _sealed(ring: KeyRing, plan: _Plan) -> bytes:
    """The value of ``plan`` sealed with its subject's loaded key: facts readable."""
    wire = plan.wire
    blob = ring.seal_loaded(_envelope(wire, plan.subject, bytes(wire.state)))
    return _value(wire, plan.facts, b',"subject":%b,"sealed":%b' % (_json(plan.subject),
                                                                   _json(blob)))


async def seal_state(ring: KeyRing, value: bytes, provider: str | None) -> bytes:
    """``value`` (a state change's JSON) with its state's personal parts sealed under its
    subject's key (created if the subject never had one; its facts only if its key was
    destroyed); ``value`` itself when the state has no personal parts or no subject. Raises
    KeyStoreUnavailable: nothing sealed. :class:`StateSealer` for many values."""
    return (await StateSealer(ring).seal([(value, provider)]))[0]


class StateSealer:
    """Seals batches of state values (:func:`seal_state`) with ``ring``: a batch's keys are
    loaded in one key-store query (only those the ring's cache lacks), and the keys its
    subjects lack are created together (the key store commits concurrent creations as one
    transaction) rather than one transaction a subject.

    A subject whose key was destroyed (``parley visitors forget``) gets no new key here: the
    projector may still hold its personal data for the moment between the destruction and
    the fold of its ``forgotten`` record, and a new key would keep that readable on the state
    topic until compaction. Its values are published as their facts only. (A new key comes
    only from the receiver sealing a new webhook of the subject.)"""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def seal(self, values: Sequence[tuple[bytes, str | None]]) -> list[bytes]:
        """Each (value, provider) sealed, in order. Raises KeyStoreUnavailable."""
        plans = [_plan(value, provider) for value, provider in values]
        subjects = {p.subject for p in plans if p is not None}
        if not subjects:
            return [value for value, _ in values]
        ring = self.ring
        await ring.load(subjects)
        keyless = [s for s in subjects if not ring.has_key(s)]
        forgotten = await self._provide(keyless) if keyless else set()
        return [value if plan is None else
                _value(plan.wire, plan.facts) if plan.subject in forgotten else
                _sealed(ring, plan)
                for (value, _), plan in zip(values, plans, strict=True)]

    async def _provide(self, subjects: list[str]) -> set[str]:
        """Create, together, the keys of ``subjects`` that never had one; the rest (their
        key was destroyed) are returned."""
        ring, store = self.ring, self.ring.store
        forgotten = await store.destroyed(subjects)
        new = [s for s in subjects if s not in forgotten]
        if new:
            await asyncio.gather(*(store.get_or_create(s) for s in new))
            for s in new:
                ring.forget(s)  # cached as having no key a moment ago
            await ring.load(new)
        return forgotten


def is_sealed(value: bytes) -> bool:
    """Whether a state topic's value carries a sealed state (cheap: no decode)."""
    return b'"sealed":' in value


def open_state(ring: KeyRing, value: bytes) -> bytes:
    """``value`` as it was before :func:`seal_state` when its subject's key opens it, else
    its facts (without ``subject`` and ``sealed``); a value never sealed, or not decodable,
    as it is (:func:`contracts.state_change.decode_state_change` reads its facts, or refuses
    it). The subject must have been loaded (:meth:`KeyRing.load` with
    :func:`parley.privacy.seal.subject_in` of each value; KeyError otherwise)."""
    if not is_sealed(value):
        return value
    try:
        wire = _WIRE.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return value  # not a state change, or a mangled seal: its reader judges what is left
    if isinstance(wire.sealed, msgspec.UnsetType) or isinstance(wire.subject, msgspec.UnsetType):
        return value
    env = _envelope(wire, wire.subject, bytes(wire.state), wire.sealed)
    return _value(wire, bytes(ring.open(env).body))
