"""Parley's contracts: the data every other part agrees on. Data only, no I/O.

The names here are the common entry points; the submodules hold the rest
(provider Structs in ``natterly`` / ``chatshipper``, domain events in ``domain``,
state shapes in ``state``, upcasters in ``upcast``).
"""

from contracts.domain import DomainEvent
from contracts.envelope import Envelope, decode_envelope, encode_envelope
from contracts.errors import ContractError
from contracts.ingest import PROVIDERS, natterly_auth_token, parse_webhook
from contracts.normalise import normalise
from contracts.position import Position
from contracts.topics import EventTopicKind, Topics, TopicSpec

__all__ = [
    "PROVIDERS",
    "ContractError",
    "DomainEvent",
    "Envelope",
    "EventTopicKind",
    "Position",
    "TopicSpec",
    "Topics",
    "decode_envelope",
    "encode_envelope",
    "natterly_auth_token",
    "normalise",
    "parse_webhook",
]
