"""Errors of per-subject encryption (:mod:`parley.privacy`). Each says what to do."""

from __future__ import annotations

from parley.errors import ParleyError, SettingsError, StoreUnavailable

__all__ = ["KeyStoreUnavailable", "MasterKeyError", "PrivacyError"]


class PrivacyError(ParleyError):
    """Base class. ``retriable`` tells callers whether trying again may help."""


class MasterKeyError(PrivacyError, SettingsError):
    """No usable master key: none configured, an unreadable file, a malformed key, or a
    stored data key wrapped by a master key this process does not have. Not retriable:
    the configuration must change."""


class KeyStoreUnavailable(StoreUnavailable, PrivacyError):
    """The key store did not answer (down, locked, unreachable). Retriable: nothing was
    written; the receiver answers 503 and the projector waits and tries again."""

    retriable = True
