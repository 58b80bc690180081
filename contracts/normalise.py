"""Envelope → domain events: pure, total, and the same on every replay.

``normalise`` never raises: a body the receiver accepted may still fail full
typed decoding (a field of an unexpected type deep inside), and an event type
may be one Parley does not understand; both yield no domain events. The
envelope itself stays in the log either way, so a later Parley can reread it.
"""

from __future__ import annotations

from contracts.chatshipper import decode_chatshipper
from contracts.decoding import check_utf8
from contracts.domain import DomainEvent
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.from_chatshipper import chatshipper_events
from contracts.from_natterly import natterly_events
from contracts.natterly import decode_documented_natterly
from contracts.origin import Origin

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


def normalise_decoded(env: Envelope, log_offset: int | None = None) -> list[DomainEvent]:
    """:func:`normalise` of an envelope that ``decode_envelope`` returned, read from the log
    at ``log_offset`` (stamped on the events: at equal times the later-received one wins).

    That one checked the whole record value to be UTF-8, ``body`` included, so the
    body is not checked again (msgspec checks only the strings it decodes; the
    projector normalises every record on every replay).
    """
    try:
        if env.provider == "natterly":
            # The documented events only: a body of any other event name means no events,
            # so (unlike decode_natterly) it is not decoded twice more.
            return natterly_events(Origin.of(env, log_offset), decode_documented_natterly(env.body))
        if env.provider == "chatshipper":
            webhook = decode_chatshipper(env.body, utf8_checked=True)
            return chatshipper_events(Origin.of(env, log_offset), webhook)
    except ContractError:
        return []
    # "standard" bodies have no agreed meaning: they are kept, not interpreted.
    return []
