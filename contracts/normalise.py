"""Envelope → domain events: pure, total, and the same on every replay.

``normalise`` never raises. A body the receiver accepted may still fail full typed
decoding (a field of an unexpected type deep inside): then the offending values are
removed one by one (:mod:`contracts.salvage`) and the rest means what it can, the
removed fields reported to the caller. An event type Parley does not understand
yields no domain events. The envelope itself stays in the log either way, so a later
Parley can reread it.
"""

from __future__ import annotations

from contracts.chatshipper import ChatShipperWebhook, decode_chatshipper
from contracts.decoding import check_utf8
from contracts.domain import DomainEvent
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.from_chatshipper import chatshipper_events
from contracts.from_natterly import natterly_events
from contracts.natterly import NATTERLY_EVENTS, decode_documented_natterly
from contracts.origin import Origin
from contracts.salvage import salvage

__all__ = ["normalise", "normalise_decoded"]


def normalise(env: Envelope) -> list[DomainEvent]:
    """The provider-neutral events ``env`` means, in a stable order.

    Event ids are ``env.event_id`` plus a ``#…`` suffix for each event beyond the
    webhook's primary one, so they are unique and identical on every replay.
    """
    if env.provider == "natterly" or env.provider == "chatshipper":
        try:
            check_utf8(env.body)
        except ContractError:
            return []
    return normalise_decoded(env)


def normalise_decoded(env: Envelope, log_offset: int | None = None,
                      dropped: list[str] | None = None) -> list[DomainEvent]:
    """:func:`normalise` of an envelope that ``decode_envelope`` returned, read from the log
    at ``log_offset`` (stamped on the events: at equal times the later-received one wins).

    ``dropped`` collects what of the body could not be used (field paths, see
    :func:`contracts.salvage.field_label`; never values): a value of the wrong type, an
    impossible time. The events are what the rest of the body means.

    That one checked the whole record value to be UTF-8, ``body`` included, so the
    body is not checked again (msgspec checks only the strings it decodes; the
    projector normalises every record on every replay).
    """
    notes = [] if dropped is None else dropped
    provider = env.provider
    if provider == "natterly":
        # The documented events only: a body of any other event name means no events,
        # so (unlike decode_natterly) it is not decoded twice more.
        try:
            natterly = decode_documented_natterly(env.body)
        except ContractError:
            salvaged = salvage(env.body, decode_documented_natterly, notes, _documented)
            if salvaged is None:
                return []
            natterly = salvaged
        return natterly_events(Origin.of(env, log_offset, notes), natterly)
    if provider == "chatshipper":
        try:
            webhook = decode_chatshipper(env.body, utf8_checked=True)
        except ContractError:
            rescued = salvage(env.body, _chatshipper, notes)
            if rescued is None:
                return []
            webhook = rescued
        return chatshipper_events(Origin.of(env, log_offset, notes), webhook)
    # "standard" bodies have no agreed meaning: they are kept, not interpreted.
    return []


def _documented(doc: dict[str, object]) -> bool:
    # An event name Parley does not model is no fault of the body: nothing to salvage.
    return doc.get("event") in NATTERLY_EVENTS


def _chatshipper(body: bytes) -> ChatShipperWebhook:
    return decode_chatshipper(body, utf8_checked=True)
