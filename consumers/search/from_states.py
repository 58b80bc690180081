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
    times = [t for t in (chat.last_message_at, chat.closed_at, chat.accepted_at,
                         chat.initiated_at) if t is not None]
    return iso_utc(max(times)) if times else None


def rows_of(changes: Iterable[StateChange]) -> tuple[list[ChatRow], list[MessageRow]]:
    """The rows of a batch of state changes: the greatest version per chat and per message,
    sorted by key (so concurrent writers lock rows in one order)."""
    chats: dict[str, ChatRow] = {}
    messages: dict[tuple[str, str], MessageRow] = {}
    for change in changes:
        state = change.state
        if getattr(state, "erasure", None) is not None:
            continue  # an erased chat's documents are dropped (erased_chats), never written
        if isinstance(state, ChatState):
            old = chats.get(state.id)
            if old is None or change.version >= old.version:
                chats[state.id] = ChatRow(
                    state.id, state.provider, state.source, state.subject,
                    state.department.name if state.department else None,
                    state.site.name if state.site else None,
                    state.visitor.name if state.visitor else None,
                    state.agent.id if state.agent else None,
                    state.agent.name if state.agent else None,
                    state.status, iso_utc(state.initiated_at), _last_activity(state),
                    change.version)
        elif isinstance(state, MessageState):
            key = (state.chat_id, state.id)
            old_message = messages.get(key)
            if old_message is None or change.version >= old_message.version:
                messages[key] = MessageRow(
                    state.chat_id, state.id, searchable_text(state),
                    state.author.name if state.author else None,
                    iso_utc(state.edited_at or state.posted_at), state.deleted, change.version)
    return ([chats[k] for k in sorted(chats)], [messages[k] for k in sorted(messages)])


def erased_chats(changes: Iterable[StateChange]) -> list[str]:
    """The chats of a batch whose state (or a message's) says they were erased (a forgotten
    data subject, docs/privacy.md): the index drops every row and document of theirs."""
    erased = {change.state.chat_id if isinstance(change.state, MessageState) else change.state.id
              for change in changes
              if isinstance(change.state, ChatState | MessageState) and change.state.erasure}
    return sorted(erased)
