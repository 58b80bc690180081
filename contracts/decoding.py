"""Guarded JSON decoding: msgspec decoders whose every failure is a ContractError."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from contracts.errors import ContractError

__all__ = ["check_utf8", "decode"]

T = TypeVar("T")


def check_utf8(data: bytes, prefix: str = "$") -> None:
    """Raise ContractError unless ``data`` is valid UTF-8.

    msgspec validates UTF-8 only in strings it converts; bytes it skips (unknown
    keys) or keeps as ``msgspec.Raw`` are not checked. A body stored in the log
    must be valid JSON text for every later reader, so we check it whole.
    """
    # isascii() is a word-at-a-time scan, far cheaper than decoding (even after
    # copying a msgspec.Raw into bytes); most webhook bodies are pure ASCII.
    if type(data) is not bytes:
        data = bytes(data)
    if data.isascii():
        return
    try:
        str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError.from_exception(exc, prefix) from None


def decode(decoder: msgspec.json.Decoder[T], data: bytes, prefix: str = "$") -> T:
    """Decode ``data`` with ``decoder``; any failure becomes a ContractError.

    ``prefix`` is the JSON path of ``data`` inside a larger document (when a
    ``msgspec.Raw`` member is decoded on its own), so error paths stay absolute.
    """
    try:
        return decoder.decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError, OverflowError) as exc:
        raise ContractError.from_exception(exc, prefix) from None
