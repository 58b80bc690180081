"""What of a webhook body stays readable: its non-personal facts, per provider.

An allowlist, not a denylist: a member is kept only if the provider's fact schema names it,
so a field a provider adds tomorrow (a custom form, a new free-text note) is sealed, never
left readable. Kept: ids, times, statuses, event names and types, roles, flags, ratings,
counts, department and site names, and agents' ids and names (staff, not the data subject).
Dropped (readable only with the subject's key): visitor and contact names, emails and
telephones, IP addresses, cities, countries and time zones, message texts, chat subjects,
page URLs and titles, session tokens, custom data, ActivityStreams summaries (they quote
names), and anything unknown.

A schema node maps a member name to ``None`` (keep a scalar: string, number, bool, null, or
a list of them) or to a nested node (recurse into an object, or into each object of a
list). A nested node with the key :data:`ID` also keeps a plain scalar in its place (ChatShipper
refers to a contact, user or conversation by id or embeds the object). ``"*"`` keeps every
member's scalar (ChatShipper's ``links``: API URLs made of ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias, Union

import msgspec

__all__ = ["ID", "facts_of"]

Node: TypeAlias = "Mapping[str, Node | None]"
ID: Final = "\x00id"
_ANY: Final = "*"

_N_DEPARTMENT: Node = {"uuid": None, "name": None}
_N_SITE: Node = {"uuid": None, "name": None, "color": None, "initials": None}
_N_USER: Node = {"uuid": None, "name": None, "admin": None, "status": None}
_N_VISITOR: Node = {"uuid": None, "anonymous": None}
_N_SESSION: Node = {"uuid": None, "visitor": _N_VISITOR, "site": _N_SITE, "active_chat_id": None,
                    "language": None}
_N_MESSAGE: Node = {
    "uuid": None, "chat": None, "event": None, "posted_by_visitor": None, "created_at": None,
    "updated_at": None, "whisper": None,
    "author": {"type": None, "details": {"uuid": None, "anonymous": None}},
    "file": {"uuid": None, "size": None, "content_type": None},
}
_N_CHAT: Node = {
    "uuid": None, "status": None, "initiated_at": None, "last_message_at": None,
    "prompt_for_transcript": None, "prompt_for_rating": None, "closed_at": None,
    "verified": None, "trusted": None, "pending_message_set_at": None, "stale": None,
    "rating": None, "browser": None, "platform": None, "department": _N_DEPARTMENT,
    "user": _N_USER, "visitor": _N_VISITOR, "session": _N_SESSION, "session_id": None,
    "last_message": _N_MESSAGE, "site": _N_SITE,
}
NATTERLY: Node = {
    "event": None, "timestamp": None,
    "payload": {"chat": _N_CHAT, "messages": _N_MESSAGE, "user": _N_USER, "rating": None,
                "visitor": _N_VISITOR, "session": _N_SESSION, "session_id": None,
                "site": _N_SITE, "status": None},
}

_C_REF: Node = {"id": None, "type": None}
_C_USER: Node = {ID: None, "id": None, "organization": None, "name": None, "displayName": None,
                 "role": None, "status": None, "createdAt": None, "updatedAt": None}
_C_CONTACT: Node = {ID: None, "id": None, "organization": None, "conversation": None,
                    "createdAt": None, "updatedAt": None}
_C_CONVERSATION: Node = {
    ID: None, "id": None, "organization": None, "type": None, "contact": _C_CONTACT,
    "status": None, "category": None, "touchpoint": None, "createdAt": None, "updatedAt": None,
    "participants": {"user": _C_USER, "role": None, "active": None, "accepted": None,
                     "inbox": None},
}
_C_MESSAGE: Node = {
    "id": None, "organization": None, "orgPath": None, "conversation": _C_CONVERSATION,
    "type": None, "role": None, "contentType": None, "isBackchannel": None, "user": _C_USER,
    "touchpoint": None, "createdAt": None, "updatedAt": None,
}
CHATSHIPPER: Node = {
    "id": None, "event": None, "timestamp": None, "organization": None,
    "activity": {"@context": None, "type": None, "actor": _C_REF, "object": _C_REF,
                 "published": None},
    "data": {"conversation": _C_CONVERSATION, "message": _C_MESSAGE, "contact": _C_CONTACT,
             "user": _C_USER, "links": {_ANY: None}},
}

STANDARD: Node = {
    "type": None, "timestamp": None,
    "data": {"id": None, "chat_id": None, "conversation_id": None, "status": None,
             "type": None},
}

_SCHEMAS: Final[Mapping[str, Node]] = {"natterly": NATTERLY, "chatshipper": CHATSHIPPER,
                                       "standard": STANDARD}
_DROP: Final = object()
_ENCODE = msgspec.json.Encoder()
_TREE = msgspec.json.Decoder()
_Scalar = Union[str, int, float, bool, None]  # noqa: UP007 - a runtime type for defstruct


def facts_of(provider: str, body: bytes) -> bytes:
    """The JSON of ``body`` with only the members the provider's fact schema keeps; ``{}``
    for a body that is not an object.

    Fast path: one msgspec decode into Structs generated from the schema (unknown members
    are skipped in C) and one encode. A body the Structs cannot hold (an object where a
    scalar is expected, a nested list, an integer beyond 64 bits) takes the slow path, the
    same rules walked in Python over the decoded tree; both give the same JSON value."""
    fast = _FAST.get(provider, _FAST["standard"])
    try:
        return _ENCODE.encode(fast.decode(body))
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    tree = _TREE.decode(body)
    kept = _keep(tree, _SCHEMAS.get(provider, STANDARD)) if isinstance(tree, dict) else _DROP
    return _ENCODE.encode(kept if kept is not _DROP else {})


def _keep(value: object, node: Node | None) -> object:
    if value is None:
        return None  # null holds nothing, wherever it is
    if isinstance(value, dict):
        if node is None:
            return _DROP
        out = {}
        anything = node.get(_ANY, _DROP)
        for name, member in value.items():
            sub = node.get(name, anything)
            if sub is _DROP:
                continue
            kept = _keep(member, sub)  # type: ignore[arg-type]
            if kept is not _DROP:
                out[name] = kept
        return out
    if isinstance(value, list):
        return [k for k in (_keep(v, node) for v in value) if k is not _DROP]
    if node is None or ID in node:
        return value
    return _DROP


def _struct(node: Node, name: str) -> object:
    """The msgspec type that holds what ``node`` keeps (see :func:`facts_of`)."""
    if _ANY in node:
        return dict[str, _Scalar]
    fields: list[tuple[str, object, object]] = []
    rename: dict[str, str] = {}
    for n, (member, sub) in enumerate(node.items()):
        if member == ID:
            continue
        if sub is None:
            kind: object = Union[_Scalar, list[_Scalar], msgspec.UnsetType]  # noqa: UP007
        else:
            inner = _struct(sub, f"{name}_{n}")
            scalar = _Scalar if ID in sub else None
            kind = Union[inner, list[inner], scalar, msgspec.UnsetType]  # type: ignore[valid-type]  # noqa: UP007
        field = f"f{n}"
        rename[field] = member
        fields.append((field, kind, msgspec.UNSET))
    return msgspec.defstruct(name, fields, rename=rename, kw_only=True, gc=False)


_FAST: Final = {provider: msgspec.json.Decoder(_struct(node, f"_{provider}_facts"))
                for provider, node in _SCHEMAS.items()}
