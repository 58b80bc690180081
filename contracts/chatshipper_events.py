"""ChatShipper's event-name grammar.

Names seen on the wire (developers.web1on1.chat/webhooks/events):

- ``message.create.<conversation type>.<message type>`` — 4 x 12 combinations;
- ``message.update``, ``message.delete``, ``message.error``;
- ``<resource>.<action>`` — e.g. ``conversation.update``, ``contact.create``,
  ``user.login``, ``service.error``;
- ``conversation.message`` — an older name for a new message, still in the
  vendor's examples, so it parses as a message creation.

The official SDK also emits a fifth segment (the message role) that is never
sent; it is accepted and kept in :attr:`MessageCreated.role`.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "CONVERSATION_TYPES",
    "MESSAGE_TYPES",
    "EventName",
    "MessageChanged",
    "MessageCreated",
    "ResourceEvent",
    "UnrecognisedEvent",
    "parse_event_name",
]

#: ``conversation.type``: a consumer conversation, a team conversation started
#: by a bot or by an agent, or an agent's default system conversation.
CONVERSATION_TYPES: Final = ("contact", "bot", "agent", "system")

#: ``message.type``, the twelve documented message types.
MESSAGE_TYPES: Final = (
    "chat",
    "card",
    "postback",
    "mention",
    "tag",
    "search",
    "command",
    "form",
    "field",
    "results",
    "report",
    "status",
)


class MessageCreated(msgspec.Struct, frozen=True, kw_only=True):
    """``message.create.<conversation_type>.<message_type>`` (None where not given)."""

    conversation_type: str | None = None
    message_type: str | None = None
    role: str | None = None

    @property
    def documented(self) -> bool:
        """Whether both types are among the documented values."""
        return self.conversation_type in CONVERSATION_TYPES and self.message_type in MESSAGE_TYPES


class MessageChanged(msgspec.Struct, frozen=True, kw_only=True):
    """``message.update``, ``message.delete`` or ``message.error``."""

    action: Literal["update", "delete", "error"]


class ResourceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``<resource>.<action>``, e.g. ``conversation.update`` or ``user.login``."""

    resource: str
    action: str


class UnrecognisedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Any name outside the grammar; the webhook is still kept."""

    name: str


EventName = MessageCreated | MessageChanged | ResourceEvent | UnrecognisedEvent


def parse_event_name(name: str) -> EventName:
    """Classify a ChatShipper ``event`` string; never raises."""
    parts = name.split(".")
    if any(not part for part in parts):
        return UnrecognisedEvent(name=name)
    if parts[0] == "message":
        if len(parts) >= 2 and parts[1] == "create" and len(parts) <= 5:
            return MessageCreated(
                conversation_type=parts[2] if len(parts) > 2 else None,
                message_type=parts[3] if len(parts) > 3 else None,
                role=parts[4] if len(parts) > 4 else None,
            )
        if len(parts) == 2:
            match parts[1]:
                case "update":
                    return MessageChanged(action="update")
                case "delete":
                    return MessageChanged(action="delete")
                case "error":
                    return MessageChanged(action="error")
        return UnrecognisedEvent(name=name)
    if parts == ["conversation", "message"]:
        return MessageCreated()
    if len(parts) == 2:
        return ResourceEvent(resource=parts[0], action=parts[1])
    return UnrecognisedEvent(name=name)
