"""The built-in ``crm`` consumer: visitors → contacts, closed chats → one activity each.

It reads the chat and visitor event topics for ``VisitorSeen`` (contacts) and the chat
state topic (the projector's chat and message states) for activities:

- ``VisitorSeen`` → upsert the contact (by email, else visitor id), unless the same contact
  version was already sent. Idempotency key: the VisitorSeen event id.
- A chat or message state → remembered (a state replaces only an older version); then, if
  the chat is closed, its activity — transcript, rating, agent, whether it completed — is
  upserted (the CRM keeps one activity per chat, by its ``external_id``) unless exactly that
  activity was already sent. Idempotency key: ``activity:<chat id>:<chat version>:<digest of
  the activity>``, so a redelivery is deduplicated by the CRM, and a closed chat whose state
  changes later (a rating, a late message, an edit, the contact's email) is sent again,
  updated. Transcripts leave out deleted messages and agent-only notes.

Erasure (docs/privacy.md): an erased chat's state (``erasure`` set, published by the
projector after a forget) deletes the chat's activity in the CRM (``erase_method`` on
``erase_activity_path``) and everything kept of the chat here; erased message states are not
kept. A forgotten visitor (the forgotten record on the visitor topic) deletes its contact
(``erase_contact_path``) and what is kept of it. Idempotency keys:
``erase:activity:<chat id>:<erasure id>``, ``erase:contact:<visitor id>:<erasure id>``.

A chat's records are handled one at a time (a lock per chat: its state and its messages'
states have different keys, and an activity must not be sent from a half-applied chat).

Failures: 429/5xx/timeouts are retried by the runner with backoff honouring Retry-After, up
to ``max_attempts``; then the record is dead-lettered (and its key parked). 4xx and
redirects are dead-lettered at once (:class:`~consumers.crm.errors.CrmRejected`,
:class:`~consumers.crm.errors.CrmRedirected`). A bad ``signing_secret`` fails :func:`build`.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime
from pathlib import Path

from consumers.api import ConsumedEvent, Consumer
from consumers.crm.client import CrmApi, HttpCrmClient
from consumers.crm.config import CrmConfig, crm_config
from consumers.crm.mapping import activity_doc, contact_doc, contact_version
from consumers.crm.state import CrmState
from consumers.registry import ConsumerContext
from consumers.retry import RetryPolicy
from consumers.search.from_states import searchable_text
from contracts.domain import VisitorSeen
from contracts.state import ChatState, MessageState

__all__ = ["build", "crm_consumer"]


def crm_consumer(cfg: CrmConfig, state: CrmState, client: CrmApi, *, name: str = "crm"
                 ) -> Consumer:
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def contact(d: VisitorSeen) -> None:
        await state.visitor(d.visitor_id, name=d.name, email=d.email, source=d.source)
        vname, email, sent = await state.visitor(d.visitor_id, name=None, email=None,
                                                 source=d.source)
        doc = contact_doc(cfg, visitor_id=d.visitor_id, name=vname, email=email, source=d.source)
        version = contact_version(doc)
        if version != sent:
            await client.post(cfg.contacts_path, doc, d.event_id)
            await state.contact_sent(d.visitor_id, version)
        if d.chat_id:
            async with lock_of(d.chat_id):
                await state.chat(d.chat_id, d.source, visitor_id=d.visitor_id)
                await upsert_activity(d.chat_id)  # the contact's email is part of it

    def lock_of(chat_id: str) -> asyncio.Lock:
        lock = locks.get(chat_id)
        if lock is None:
            lock = locks[chat_id] = asyncio.Lock()
        return lock

    async def upsert_activity(chat_id: str) -> None:
        """Send the activity of a closed chat as it now stands, unless already sent."""
        closed = await state.closed_chat(chat_id)
        if closed is None:
            return
        version, closed_at, sent = closed
        summary = await state.chat_summary(chat_id)
        doc = activity_doc(cfg, chat_id=chat_id, summary=summary,
                           closed_at=datetime.fromisoformat(closed_at) if closed_at else None)
        key = f"activity:{chat_id}:{version}:{contact_version(doc)[:16]}"
        if key != sent:
            await client.post(cfg.activities_path, doc, key)
            await state.activity_sent(chat_id, key)

    async def activity(ev: ConsumedEvent) -> None:
        change = ev.state
        chat = change.state
        if isinstance(chat, ChatState):
            chat_id = chat.id
        elif isinstance(chat, MessageState):
            chat_id = chat.chat_id
        else:
            return
        async with lock_of(chat_id):
            if chat.erasure is not None:
                await erase_chat(chat_id, chat.erasure.id, isinstance(chat, ChatState))
                return
            if isinstance(chat, ChatState):
                await state.chat_state(chat, change.version)
            else:
                # Agent-only notes reach a transcript only when configured (internal_notes).
                text = (chat.text if cfg.internal_notes and chat.internal and not chat.deleted
                        else searchable_text(chat))
                await state.message_state(chat, change.version, text)
            await upsert_activity(chat_id)

    async def erase_chat(chat_id: str, erasure_id: str, announce: bool) -> None:
        """Forget the chat here; for its chat state (``announce``), in the CRM too."""
        await state.forget_chat(chat_id)
        if announce and cfg.erase:
            await client.erase(cfg.erase_method, cfg.erase_path("activity", chat_id),
                               f"erase:activity:{chat_id}:{erasure_id}")

    async def handle(ev: ConsumedEvent) -> None:
        if ev.is_state:
            await activity(ev)
            return
        forgotten = ev.forgotten
        if forgotten is not None:
            if forgotten.kind == "visitor":
                await state.forget_visitor(forgotten.id)
                if cfg.erase:
                    await client.erase(cfg.erase_method, cfg.erase_path("contact", forgotten.id),
                                       f"erase:contact:{forgotten.id}:{forgotten.erasure_id}")
            return
        for d in ev.domain:
            if isinstance(d, VisitorSeen):
                await contact(d)

    async def start() -> None:
        await state.open()
        await client.start()

    async def stop() -> None:
        await client.close()
        await state.close()

    return Consumer(name=name, handle=handle, topics=("chat", "visitor"), states=("chat",),
                    kinds=frozenset({"VisitorSeen"}),
                    retry=RetryPolicy(max_attempts=cfg.max_attempts, base_delay_s=0.5,
                                      max_delay_s=cfg.max_delay_s),
                    start=start, stop=stop, secrets=cfg.secrets(), max_records=cfg.max_records)


def build(ctx: ConsumerContext) -> Consumer:
    """Entry-point factory: ``parley consumer crm`` with a ``[consumers.crm]`` table."""
    cfg = crm_config(ctx.config)
    path = Path(cfg.state_path) if cfg.state_path else ctx.data_dir / "crm.db"
    return crm_consumer(cfg, CrmState(path), HttpCrmClient(cfg), name=ctx.name)
