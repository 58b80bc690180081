"""Generic Standard Webhooks bodies (``{"type", "timestamp", "data"}``), loosely typed.

The Standard Webhooks spec puts the event id in the ``webhook-id`` header, not
the body, so Parley's event id for this provider comes from the header (see
:func:`contracts.ingest.parse_webhook`). The body is only loosely conventional:
every member is optional here.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.decoding import check_utf8, decode
from contracts.timestamps import UnixSeconds

__all__ = ["StandardWebhook", "decode_standard"]


class StandardWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """``type`` names the event (e.g. ``contact.created``); ``timestamp`` is
    ISO-8601 or Unix seconds; ``data`` is the sender's payload."""

    type: str | None = None
    timestamp: datetime | UnixSeconds | None = None
    data: dict[str, object] | None = None


_DECODER = msgspec.json.Decoder(StandardWebhook)


def decode_standard(body: bytes) -> StandardWebhook:
    """Decode a Standard Webhooks body; ContractError on invalid JSON, UTF-8 or types."""
    check_utf8(body)
    return decode(_DECODER, body)
