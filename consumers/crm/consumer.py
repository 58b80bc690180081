"""The built-in ``crm`` consumer: visitors → contacts, finished chats → activities.

For each record it first updates its own state (messages for the transcript, the chat's
visitor, agent, rating), then performs the CRM calls the record implies:

- ``VisitorSeen`` → upsert the contact (by email, else visitor id), unless the same contact
  version was already sent. Idempotency key: the VisitorSeen event id.
- ``ChatClosed`` → one activity for the chat with its transcript, rating, agent and whether
  it completed. Idempotency key: the ChatClosed event id, so a redelivery (after a crash or a
  rebalance) is deduplicated by the CRM: each activity exists once.

Failures: 429/5xx/timeouts are retried by the runner with backoff honouring Retry-After, up
to ``max_attempts``; then the event is dead-lettered (and its key parked). 4xx and
redirects are dead-lettered at once (:class:`~consumers.crm.errors.CrmRejected`,
:class:`~consumers.crm.errors.CrmRedirected`). A bad ``signing_secret`` fails :func:`build`.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from consumers.api import ConsumedEvent, Consumer
from consumers.crm.client import CrmApi, HttpCrmClient
from consumers.crm.config import CrmConfig, crm_config
from consumers.crm.mapping import activity_doc, contact_doc, contact_version
from consumers.crm.state import CrmState
from consumers.registry import ConsumerContext
from consumers.retry import RetryPolicy
from consumers.search.queries import iso_utc
from contracts.domain import (
    ChatAccepted,
    ChatAssigned,
    ChatClosed,
    ChatCompleted,
    ChatRated,
    ChatUpdated,
    DomainEvent,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    VisitorSeen,
)

__all__ = ["build", "crm_consumer"]


async def _remember(state: CrmState, d: DomainEvent) -> None:
    """Step 1 of a record: fold what the CRM calls will need into the local state."""
    match d:
        case ChatUpdated():
            await state.chat(d.chat_id, d.source, subject=d.subject,
                             visitor_id=d.visitor.id if d.visitor else None)
            if d.visitor is not None and d.visitor.id:
                await state.visitor(d.visitor.id, name=d.visitor.name, email=None,
                                    source=d.source)
        case ChatAccepted() | ChatAssigned():
            await state.chat(d.chat_id, d.source, agent=d.agent.name or d.agent.id
                             if d.agent else None)
        case ChatRated():
            await state.chat(d.chat_id, d.source, rating=orjson.dumps(d.rating).decode()
                             if d.rating is not None else None)
        case ChatCompleted():
            await state.chat(d.chat_id, d.source, completed=True)
        case MessagePosted():
            await state.message(d.chat_id, d.message_id, text=d.text, internal=d.internal,
                                text_at=iso_utc(d.posted_at) or "", posted_at=iso_utc(d.posted_at),
                                author=d.author.name or d.author.role)
        case MessageEdited():
            await state.message(d.chat_id, d.message_id, text=d.text, internal=d.internal,
                                text_at=iso_utc(d.edited_at) or "")
        case MessageDeleted():
            await state.message(d.chat_id, d.message_id, text=None,
                                text_at=iso_utc(d.deleted_at) or "", deleted=True)
        case VisitorSeen():
            await state.visitor(d.visitor_id, name=d.name, email=d.email, source=d.source)
            if d.chat_id:
                await state.chat(d.chat_id, d.source, visitor_id=d.visitor_id)
        case _:
            pass


def crm_consumer(cfg: CrmConfig, state: CrmState, client: CrmApi, *, name: str = "crm"
                 ) -> Consumer:
    async def handle(ev: ConsumedEvent) -> None:
        domain = ev.domain
        for d in domain:
            await _remember(state, d)
        # Step 2: the CRM calls, after the state knows everything this record said.
        for d in domain:
            if isinstance(d, VisitorSeen):
                vname, email, sent = await state.visitor(d.visitor_id, name=None, email=None,
                                                         source=d.source)
                doc = contact_doc(cfg, visitor_id=d.visitor_id, name=vname, email=email,
                                  source=d.source)
                version = contact_version(doc)
                if version != sent:
                    await client.post(cfg.contacts_path, doc, d.event_id)
                    await state.contact_sent(d.visitor_id, version)
            elif isinstance(d, ChatClosed):
                summary = await state.chat_summary(d.chat_id, internal_notes=cfg.internal_notes)
                doc = activity_doc(cfg, chat_id=d.chat_id, summary=summary,
                                   closed_at=d.closed_at or d.occurred_at)
                await client.post(cfg.activities_path, doc, d.event_id)

    async def start() -> None:
        await state.open()
        await client.start()

    async def stop() -> None:
        await client.close()
        await state.close()

    return Consumer(name=name, handle=handle, topics=("chat", "visitor"),
                    kinds=frozenset({"VisitorSeen", "ChatUpdated", "ChatAccepted",
                                     "ChatAssigned", "ChatRated", "ChatCompleted", "ChatClosed",
                                     "MessagePosted", "MessageEdited", "MessageDeleted"}),
                    retry=RetryPolicy(max_attempts=cfg.max_attempts, base_delay_s=0.5,
                                      max_delay_s=cfg.max_delay_s),
                    start=start, stop=stop, secrets=cfg.secrets())


def build(ctx: ConsumerContext) -> Consumer:
    """Entry-point factory: ``parley consumer crm`` with a ``[consumers.crm]`` table."""
    cfg = crm_config(ctx.config)
    path = Path(cfg.state_path) if cfg.state_path else ctx.data_dir / "crm.db"
    return crm_consumer(cfg, CrmState(path), HttpCrmClient(cfg), name=ctx.name)
