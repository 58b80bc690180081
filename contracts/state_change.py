"""The value of a record on a state topic (``<prefix>.state.{chat,visitor,agent}``).

The projector publishes every state it commits as a :class:`StateChange`: the state as the
query API serves it, its ``version`` and the log positions it covers. Data only, no I/O.

Versions: ``positions`` names, for every event-topic partition that ever touched the
aggregate, the last record of it folded into this state; ``version`` is the sum of those
offsets plus one each. So a state folded from more of the log always has a greater version,
the same state (the same records folded) always has the same one — re-published after a
crash, or rebuilt from the log — and a consumer is idempotent by keeping, per key, the
state with the greatest version it has seen (``>=``: equal versions are equal states).

Messages: a chat's messages are not in its state, so message states are published too, on
the *chat* state topic, in the partition of their chat (so a chat's changes and its
messages' changes stay in order), keyed by ``"{chat_id}/{message_id}"`` (so compaction
keeps every message's latest state). ``kind`` tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import msgspec

from contracts.errors import ContractError
from contracts.position import Position
from contracts.state import AgentState, ChatState, MessageState, VisitorState

__all__ = [
    "STATE_KINDS",
    "AnyState",
    "StateChange",
    "StateKind",
    "decode_state_change",
    "encode_state_change",
    "state_topic_kind",
    "version_of",
]

#: What a state change is about. ``message`` changes travel on the chat state topic.
StateKind = Literal["chat", "message", "visitor", "agent"]
STATE_KINDS: tuple[StateKind, ...] = ("chat", "message", "visitor", "agent")

AnyState: TypeAlias = ChatState | MessageState | VisitorState | AgentState


class StateChange(msgspec.Struct, frozen=True, kw_only=True):
    """One committed state of one aggregate, as published to its state topic.

    Attributes:
        kind: ``chat``, ``message``, ``visitor`` or ``agent``.
        id: the aggregate's id (a message's is ``"{chat_id}/{message_id}"``); the record key.
        version: grows with every record folded into the state (see the module docstring).
        positions: per event-topic partition, the last record folded into this state.
        state: the state, exactly as ``GET /api/...`` serves it.
    """

    kind: StateKind
    id: str
    version: int
    positions: tuple[Position, ...]
    state: AnyState


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    kind: StateKind
    id: str
    version: int
    positions: tuple[Position, ...]
    state: msgspec.Raw


_WIRE = msgspec.json.Decoder(_Wire)
_STATES: dict[str, msgspec.json.Decoder[AnyState]] = {
    "chat": msgspec.json.Decoder(ChatState),
    "message": msgspec.json.Decoder(MessageState),
    "visitor": msgspec.json.Decoder(VisitorState),
    "agent": msgspec.json.Decoder(AgentState),
}
_json = msgspec.json.encode


def version_of(positions: tuple[Position, ...]) -> int:
    """The version of a state covering ``positions``: the sum of their offsets plus one each."""
    return sum(p.offset + 1 for p in positions)


def state_topic_kind(kind: StateKind) -> Literal["chat", "visitor", "agent"]:
    """Which state topic carries changes of ``kind`` (messages go with their chat)."""
    return "chat" if kind == "message" else kind


def encode_state_change(kind: str, id: str, positions: Sequence[tuple[str, int, int]],
                        state_json: bytes) -> bytes:
    """A state change's JSON from a state already encoded as JSON (spliced in as it is) and
    the ``(topic, partition, offset)`` of each position it covers. Written out by hand: it
    runs for every state the projector commits, and building Structs to encode costs more
    than the rest of publishing a state."""
    version = sum(offset + 1 for _, _, offset in positions)
    covered = b",".join([b'{"topic":%b,"partition":%d,"offset":%d}' % (_json(topic), partition, offset)
                         for topic, partition, offset in positions])
    return (b'{"kind":%b,"id":%b,"version":%d,"positions":[%b],"state":%b}'
            % (_json(kind), _json(id), version, covered, state_json))


def decode_state_change(data: bytes) -> StateChange:
    """Decode a state topic's record value; ContractError (never retriable) if it is not one."""
    try:
        wire = _WIRE.decode(data)
        state = _STATES[wire.kind].decode(wire.state)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"not a state change: {exc}") from None
    return StateChange(kind=wire.kind, id=wire.id, version=wire.version,
                       positions=wire.positions, state=state)
