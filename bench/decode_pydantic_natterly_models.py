"""Decode benchmark, pydantic v2 baseline for Natterly: the models (shapes of contracts.natterly)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from decode_common import N_CHAT_EVENTS
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Unix = Annotated[int, Field(ge=0, le=253_402_300_799)] | Annotated[float, Field(ge=0, le=253_402_300_799)]


class P(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PDepartment(P):
    uuid: str | None = None
    name: str | None = None


class PSite(P):
    uuid: str | None = None
    name: str | None = None
    color: str | None = None
    initials: str | None = None


class PUser(P):
    uuid: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    status: str | None = None


class PVisitor(P):
    uuid: str | None = None
    name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None


class PSession(P):
    uuid: str | None = None
    token: str | None = None
    page_url: str | None = None
    page_title: str | None = None
    language: str | None = None
    time_zone: str | None = None
    browser: str | None = None
    ip_address: str | None = None
    visitor: PVisitor | None = None
    site: PSite | None = None
    active_chat_id: str | None = None
    custom_data: dict[str, Any] | list[Any] | None = None


class PAuthorDetails(P):
    uuid: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None
    email_address: str | None = None


class PAuthor(P):
    type: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    details: PAuthorDetails | None = None


class PAttachment(P):
    uuid: str | None = None
    name: str | None = None
    url: str | None = None
    size: int | None = None
    content_type: str | None = None


class PMessage(P):
    uuid: str | None = None
    chat: str | None = None
    text: str | None = None
    event: bool | None = None
    author: PAuthor | None = None
    posted_by_visitor: bool | None = None
    created_at: Unix | None = None
    updated_at: Unix | None = None
    file: PAttachment | None = None
    formatting: str | None = None
    whisper: bool | None = None


class PChat(P):
    uuid: str | None = None
    status: str | None = None
    subject: str | None = None
    initiated_at: Unix | None = None
    last_message_at: Unix | None = None
    prompt_for_transcript: bool | None = None
    prompt_for_rating: bool | None = None
    closed_at: Unix | None = None
    verified: bool | None = None
    trusted: bool | None = None
    pending_message: str | None = None
    pending_message_set_at: Unix | None = None
    ip_address: str | None = None
    city: str | None = None
    country: str | None = None
    country_code: str | None = None
    browser: str | None = None
    platform: str | None = None
    stale: bool | None = None
    time_zone: str | None = None
    rating: bool | int | float | str | None = None
    department: PDepartment | None = None
    user: PUser | None = None
    visitor: PVisitor | None = None
    visitor_custom_data: dict[str, Any] | list[Any] | None = None
    session: PSession | None = None
    session_id: str | None = None
    last_message: PMessage | None = None
    site: PSite | None = None


class PChatPayload(P):
    chat: PChat | None = None
    messages: list[PMessage] | None = None
    user: PUser | None = None
    rating: bool | int | float | str | None = None


class PVisitorPayload(P):
    visitor: PVisitor | None = None
    session: PSession | None = None
    session_id: str | None = None
    site: PSite | None = None
    chat: PChat | None = None


class PUserPayload(P):
    user: PUser | None = None
    status: str | None = None


def _chat_webhook(name: str) -> type[P]:
    return type(
        name,
        (P,),
        {
            "__annotations__": {
                "event": Literal[name],
                "timestamp": Unix | None,
                "payload": PChatPayload | None,
            },
            "timestamp": None,
            "payload": None,
        },
    )


class PVisitorCreated(P):
    event: Literal["VisitorCreated"]
    timestamp: Unix | None = None
    payload: PVisitorPayload | None = None


class PSessionRegistration(P):
    event: Literal["SessionRegistration"]
    timestamp: Unix | None = None
    payload: PVisitorPayload | None = None


class PUserStatusChanged(P):
    event: Literal["UserStatusChanged"]
    timestamp: Unix | None = None
    payload: PUserPayload | None = None


P_CHAT_WEBHOOKS = {name: _chat_webhook(name) for name in sorted(N_CHAT_EVENTS)}
P_NATTERLY_UNION: Any = Union[
    (*P_CHAT_WEBHOOKS.values(), PVisitorCreated, PSessionRegistration, PUserStatusChanged)
]
P_NATTERLY: TypeAdapter[Any] = TypeAdapter(Annotated[P_NATTERLY_UNION, Field(discriminator="event")])


class PId(P):
    uuid: str | None = None


class PNSession(P):
    uuid: str | None = None
    visitor: PId | None = None


class PNChat(P):
    uuid: str | None = None
    visitor: PId | None = None
    session: PNSession | None = None
    session_id: str | None = None


class PNMessage(P):
    chat: str | None = None


class PNPayload(P):
    chat: PNChat | None = None
    messages: list[PNMessage] | None = None
    visitor: PId | None = None
    session: PNSession | None = None
    session_id: str | None = None
    user: PId | None = None


class PNIngest(P):
    event: str = Field(min_length=1)
    timestamp: Unix | None = None
    payload: PNPayload | None = None
    auth_token: str | None = None
