"""What the search index keeps of the projector's states: one row per chat, one per message.

Pure. The search consumer reads the chat state topic (chats and their messages, see
:mod:`contracts.state_change`), so status, agent, visitor, texts and which messages are
agent-only are the projector's decisions, not the index's. Each row carries its state's
version; an index keeps a row only if its version is at least the stored one, so redelivery
and any order of delivery leave the same index.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from consumers.search.queries import iso_utc
from contracts.state import ChatState, MessageState
from contracts.state_change import StateChange

__all__ = ["ChatRow", "MessageRow", "erased_chats", "rows_of", "searchable_text"]


class ChatRow(NamedTuple):
    chat_id: str
    provider: str | None
    source: str | None
    subject: str | None
    department: str | None
    site: str | None
    visitor_name: str | None
    agent_id: str | None
    agent_name: str | None
    status: str | None
    started_at: str | None
    last_at: str | None
    version: int


class MessageRow(NamedTuple):
    chat_id: str
    message_id: str
    text: str | None  # None: not searchable (deleted, or an agent-only note)
    author: str | None
    text_at: str | None
    deleted: bool
    version: int


def searchable_text(message: MessageState) -> str | None:
    """A message's text as search shows it: none once deleted or when agent-only."""
    # ``internal`` (agent-only notes) is set by the projector's fold; states published
    # before it existed decode with its default, False.
    if message.deleted or message.internal:
        return None
    return message.text


def _last_activity(chat: ChatState) -> str | None:
    latest = None
    for t in (chat.last_message_at, chat.closed_at, chat.accepted_at, chat.initiated_at):
        if t is not None and (latest is None or t > latest):
            latest = t
    return iso_utc(latest)


def rows_of(changes: Iterable[StateChange]) -> tuple[list[ChatRow], list[MessageRow]]:
    """The rows of a batch of state changes: the greatest version per chat and per message,
    sorted by key (so concurrent writers lock rows in one order). Only the winning state of a
    key is turned into a row (most of a batch's states are messages, each its own key)."""
    chats: dict[str, StateChange] = {}
    messages: dict[tuple[str, str], StateChange] = {}
    for change in changes:
        state = change.state
        # An erased chat's documents are dropped (erased_chats), never written.
        if isinstance(state, MessageState) and state.erasure is None:
            key = (state.chat_id, state.id)
            old = messages.get(key)
            if old is None or change.version >= old.version:
                messages[key] = change
        elif isinstance(state, ChatState) and state.erasure is None:
            old = chats.get(state.id)
            if old is None or change.version >= old.version:
                chats[state.id] = change
    return ([_chat_row(chats[k]) for k in sorted(chats)],
            [_message_row(messages[k]) for k in sorted(messages)])


def _chat_row(change: StateChange) -> ChatRow:
    c: ChatState = change.state  # type: ignore[assignment]
    agent = c.agent
    return ChatRow(c.id, c.provider, c.source, c.subject,
                   c.department.name if c.department else None,
                   c.site.name if c.site else None,
                   c.visitor.name if c.visitor else None,
                   agent.id if agent else None, agent.name if agent else None,
                   c.status, iso_utc(c.initiated_at), _last_activity(c), change.version)


def _message_row(change: StateChange) -> MessageRow:
    m: MessageState = change.state  # type: ignore[assignment]
    return MessageRow(m.chat_id, m.id, searchable_text(m), m.author.name if m.author else None,
                      iso_utc(m.edited_at or m.posted_at), m.deleted, change.version)


def erased_chats(changes: Iterable[StateChange]) -> list[str]:
    """The chats of a batch whose state (or a message's) says they were erased (a forgotten
    data subject, docs/privacy.md): the index drops every row and document of theirs."""
    erased = {change.state.chat_id if isinstance(change.state, MessageState) else change.state.id
              for change in changes
              if isinstance(change.state, ChatState | MessageState) and change.state.erasure}
    return sorted(erased)
