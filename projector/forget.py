"""Forgetting a data subject (``parley visitors forget``): find everything of theirs in the
projection, destroy their keys, record the request and publish the forgotten records.

Steps of :func:`forget` (docs/privacy.md, "Forget a visitor"):

1. :func:`resolve` the subject from the live projection (which holds decrypted visitors):
   by visitor id, by email (a scan of the visitors) or by chat id (the chat's visitor, else
   the chat alone); the visitor's provisional session visitors and every chat of theirs,
   with each chat's message ids. Nothing found: :class:`UnknownSubject`, nothing changed.
2. Destroy the data keys of the visitor(s) and of every chat (and every chat the key store
   links to the visitor): from here on the log's personal parts cannot be read.
3. Append the :class:`~contracts.forgotten.ErasureRequest` to the erasure ledger.
4. Last, publish one forgotten record per aggregate on its event topic (acks=all): the
   projector erases each in log order and publishes the erased states, the search consumer
   drops the chats' documents, every consumer group is told and records in the ledger.

Repeating a forget is safe: keys already gone stay gone, and the records erase again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from contracts.forgotten import ErasureRequest, Forgotten, forgotten_record
from contracts.state import ChatState, MessageState, VisitorState
from contracts.topics import Topics
from parley.erasure_ledger import LedgerWriter
from parley.kafka.clients import make_producer
from parley.privacy.keys import KeyStore
from parley.privacy.ring import KeyRing
from parley.privacy.subjects import subject_of, visitor_subject
from parley.settings import KafkaSettings
from projector.outbox import unwrap_state
from projector.states import AggregateRef, decode_state
from projector.store import Store

__all__ = ["Subject", "UnknownSubject", "erased_in", "forget", "resolve"]

_VISITOR = msgspec.json.Decoder(VisitorState)
_CHAT = msgspec.json.Decoder(ChatState)
_MESSAGE = msgspec.json.Decoder(MessageState)


class UnknownSubject(Exception):
    """Nothing in the projection matches the id, email or chat asked for."""


@dataclass
class Subject:
    """What one forget covers: ``visitors`` (the visitor and its session visitors; empty
    when forgetting a chat whose visitor is unknown), ``chats`` (chat id → message ids)."""

    subject: str
    visitor: str
    provider: str
    source: str
    visitors: list[str] = field(default_factory=list)
    chats: dict[str, list[str]] = field(default_factory=dict)

    @property
    def aggregates(self) -> list[str]:
        return [*(f"visitor:{v}" for v in self.visitors), *(f"chat:{c}" for c in self.chats)]


async def resolve(store: Store, *, visitor: str | None = None, email: str | None = None,
                  chat: str | None = None) -> Subject:
    """The subject one of ``visitor``, ``email``, ``chat`` names (see the module doc, step 1)."""
    live = await store.live_projection()
    if live is None:
        raise UnknownSubject("no projection yet (the projector creates v1 when it starts): "
                             "no visitor is known")
    if email is not None:
        visitor = await _visitor_by_email(store, live, email)
        if visitor is None:
            raise UnknownSubject(f"no visitor with that email ({_masked(email)})")
    if chat is not None:
        raw = await store.get_view(live, "chat", chat)
        if raw is None:
            raise UnknownSubject(f"no chat {chat!r}")
        ref = _CHAT.decode(raw).visitor
        if ref is None or ref.id is None:
            provider, source = await _origin(store, live, AggregateRef("chat", chat))
            found = Subject(subject=subject_of(provider, "chat", chat), visitor="",
                            provider=provider, source=source)
            found.chats[chat] = await _messages(store, live, chat)
            return found
        visitor = ref.id
    assert visitor is not None
    raw = await store.get_view(live, "visitor", visitor)
    if raw is None:
        raise UnknownSubject(f"no visitor {visitor!r}")
    view = _VISITOR.decode(raw)
    provider, source = await _origin(store, live, AggregateRef("visitor", visitor))
    found = Subject(subject=visitor_subject(provider, visitor), visitor=visitor,
                    provider=provider, source=source, visitors=[visitor])
    chats = set(view.chats)
    for session in view.sessions:
        raw = await store.get_view(live, "visitor", session)
        if raw is not None:
            found.visitors.append(session)
            chats.update(_VISITOR.decode(raw).chats)
    for chat_id in sorted(chats):
        found.chats[chat_id] = await _messages(store, live, chat_id)
    return found


async def forget(subject: Subject, *, store: Store, kafka: KafkaSettings, topics: Topics,
                 keys: KeyStore | None, ring: KeyRing | None = None) -> ErasureRequest:
    """Steps 2-4 of the module doc; the request as recorded in the ledger. ``ring``: this
    process's key ring, which stops using the destroyed keys at once (other processes'
    rings within ``privacy.cache_ttl_s``)."""
    _ = store
    erasure_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    # Step 2: the keys (the visitor's, its sessions', every chat's, and the chats linked).
    destroyed = 0
    if keys is not None:
        subjects = {visitor_subject(subject.provider, v) for v in subject.visitors}
        subjects.update(subject_of(subject.provider, "chat", c) for c in subject.chats)
        for parent in [s for s in subjects if ":chat:" not in s]:
            subjects.update(await keys.linked(parent))
        for name in sorted(subjects):
            destroyed += await keys.destroy(name)
            if ring is not None:
                ring.forget(name)
    request = ErasureRequest(erasure_id=erasure_id, subject=subject.subject,
                             visitor=subject.visitor, aggregates=tuple(subject.aggregates),
                             keys_destroyed=destroyed, requested_at=now)
    # Step 3: the ledger.
    ledger = LedgerWriter(kafka, topics)
    try:
        await ledger.append([request])
    finally:
        await ledger.close()
    # Step 4: the forgotten records, last.
    records = [Forgotten(erasure_id=erasure_id, subject=subject.subject, kind="visitor", id=v,
                         source=subject.source, requested_at=now) for v in subject.visitors]
    records += [Forgotten(erasure_id=erasure_id, subject=subject.subject, kind="chat", id=c,
                          source=subject.source, requested_at=now, messages=tuple(m))
                for c, m in subject.chats.items()]
    producer = make_producer(kafka)
    await producer.start()
    try:
        sent = []
        for f in records:
            key, value, headers = forgotten_record(f)
            sent.append(await producer.send(topics.for_aggregate(f.kind), value, key=key,
                                            headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return request


async def erased_in(store: Store, projection: str, erasure_id: str,
                    aggregates: Sequence[str]) -> list[str]:
    """Which of ``aggregates`` (``"kind:id"``) the copy ``projection`` holds erased by
    ``erasure_id`` (its state says so: the projection's own record of the erasure)."""
    done = []
    for aggregate in aggregates:
        kind, _, id = aggregate.partition(":")
        raw = await store.get_view(projection, kind, id)
        if raw is None:
            continue
        decoder = _VISITOR if kind == "visitor" else _CHAT
        erasure = decoder.decode(raw).erasure
        if erasure is not None and erasure.id == erasure_id:
            done.append(aggregate)
    return done


async def _visitor_by_email(store: Store, projection: str, email: str) -> str | None:
    """The visitor with ``email`` (case ignored), by a scan of the copy's visitors (an
    operator's command: one pass over the visitors, a page at a time)."""
    wanted = email.strip().casefold()
    after: tuple[str, str] = ("visitor", "")
    while True:
        page = await store.fingerprints(projection, after=after, limit=1000)
        visitors = [f.id for f in page if f.kind == "visitor"]
        for visitor_id in visitors:
            raw = await store.get_view(projection, "visitor", visitor_id)
            if raw is not None:
                found = _VISITOR.decode(raw).email
                if found is not None and found.strip().casefold() == wanted:
                    return visitor_id
        if len(visitors) < len(page) or not page:
            return None
        after = (page[-1].kind, page[-1].id)


async def _messages(store: Store, projection: str, chat_id: str) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        views, cursor = await store.list_messages(projection, chat_id, limit=500, cursor=cursor)
        out.extend(_MESSAGE.decode(v).id for v in views)
        if cursor is None:
            return out


async def _origin(store: Store, projection: str, ref: AggregateRef) -> tuple[str, str]:
    """(provider, source) of an aggregate, from its fold state."""
    raw = (await store.load(projection, [ref])).get(ref)
    if raw is None:
        return "unknown", "unknown"
    state = decode_state(ref.kind, unwrap_state(raw)[1])
    return state.provider or "unknown", state.source or "unknown"


def _masked(email: str) -> str:
    """An email for an error line without repeating it whole (it is personal data)."""
    name, _, domain = email.partition("@")
    return f"{name[:1]}…@{domain}" if domain else "…"
