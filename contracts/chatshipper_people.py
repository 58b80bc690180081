"""Who a ChatShipper conversation's participants and users are: the agent handling it, the
agents it names, and their display names (pure helpers of :mod:`contracts.from_chatshipper`).
"""

from __future__ import annotations

from contracts import chatshipper as c
from contracts.domain import AgentRef

__all__ = ["accepted_agent", "agent_left", "named_agents", "populated", "user_name"]


def _is_agent(participant: c.Participant) -> bool:
    return (participant.role or "").casefold() == "agent"


def accepted_agent(conversation: c.Conversation, *, closed: bool) -> AgentRef | None:
    """The agent handling the conversation: the last accepted agent participant still
    active (a transfer leaves the previous one listed, inactive). Only a closed
    conversation, whose agents have all left, falls back to the last accepted one."""
    found: c.Participant | None = None
    for participant in conversation.participants or ():
        if not (participant.accepted and participant.user_id and _is_agent(participant)):
            continue
        if participant.active is not False or found is None or found.active is False:
            found = participant
    if found is None or not found.user_id or (found.active is False and not closed):
        return None
    return AgentRef(id=found.user_id, name=user_name(populated(found.user)))


def agent_left(conversation: c.Conversation) -> bool:
    """Some accepted agent participant is listed as no longer active (transferred, left)."""
    for participant in conversation.participants or ():
        if participant.active is False and participant.accepted and _is_agent(participant):
            return True
    return False


def named_agents(conversation: c.Conversation) -> tuple[AgentRef, ...]:
    """Every agent participant whose user the API populated with a name (an id alone
    names nobody), in the order listed."""
    found: list[AgentRef] = []
    for participant in conversation.participants or ():
        user_id = participant.user_id
        name = user_name(populated(participant.user))
        if user_id and name and _is_agent(participant):
            found.append(AgentRef(id=user_id, name=name))
    return tuple(found)


def populated(user: str | c.User | None) -> c.User | None:
    """A user reference the API populated into the object (an id alone names nobody).

    Not isinstance(user, c.User): against a Struct class a miss takes the slow path, and
    most references are plain ids.
    """
    return None if user is None or isinstance(user, str) else user


def user_name(user: c.User | None) -> str | None:
    """A user's display name, else its name, else None."""
    if user is None:
        return None
    return user.display_name or user.name or None
