"""Masking configured secrets out of text, in one place for every text that leaves the process.

The log formatter (:mod:`parley.logs`), dead-letter error texts (:mod:`consumers.parking`) and
the CRM client's error lines (:mod:`consumers.crm.client`) all mask with :class:`SecretMask`:
every spelling of a secret the text can hold becomes ``***``, not only the plain one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import orjson

__all__ = ["MASK", "SecretMask", "mask_secrets"]

#: What a masked secret reads as.
MASK = "***"


def _masked_forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` a rendered text can hold: as is; as ``repr()`` or
    ``ascii()`` print it (``%r`` in a message, a secret inside a list or dict, its UTF-8
    bytes); and each of those inside a JSON string (``"`` and ``\\`` escaped, control
    characters as ``\\n`` or ``\\u00XX``), once or twice (a JSON document logged as a
    string)."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], repr(secret.encode())[2:-1]}
    for _ in range(2):
        forms |= {orjson.dumps(form).decode()[1:-1] for form in forms}
    return forms


class SecretMask:
    """Replaces each of ``secrets``, in whatever form it reached a text (see
    :func:`_masked_forms`), with :data:`MASK`. Build once, apply to many texts."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets if s for form in _masked_forms(s)}
        # Longest first: a secret that contains another is masked whole, not in part.
        self._pattern = (re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
                         if forms else None)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` masked (:class:`SecretMask`; the last few masks
    are kept, so a run of failures with the same secrets compiles one pattern)."""
    return _mask_of(tuple(secrets))(text)


@functools.lru_cache(maxsize=16)
def _mask_of(secrets: tuple[str, ...]) -> SecretMask:
    return SecretMask(secrets)
