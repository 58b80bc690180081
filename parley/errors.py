"""Errors of Parley's shared plumbing. Each says what the operator should do."""

from __future__ import annotations

from typing import ClassVar


class ParleyError(Exception):
    """Base class. ``retriable`` tells callers whether trying again may help."""

    retriable: ClassVar[bool] = False


class SettingsError(ParleyError):
    """The configuration is missing, malformed or inconsistent."""


class LauncherError(ParleyError):
    """The local Kafka launcher cannot do what was asked (missing Java/Maven, port taken…)."""


class ListenError(ParleyError):
    """The HTTP server cannot listen where it was told (the port is taken, the host is not
    this machine's…)."""


class KafkaUnavailable(ParleyError):
    """Kafka did not answer in time. Retriable: the broker may come back."""

    retriable = True


class KafkaRefused(ParleyError):
    """Kafka answered but refused an administrative request (a missing permission, a broker
    policy, an impossible setting). Not retriable: a permission or the configuration must
    change first."""


class NoLocalKafka(ParleyError):
    """``kafka.bootstrap`` is unset and no local broker runs for the data directory."""


class LocalKafkaInUse(ParleyError):
    """``parley kafka down`` was asked to stop a local broker that a process still uses."""


class StoreError(ParleyError):
    """A database Parley keeps state in (the projector's store, the search index) refused an
    operation; the message says what to do."""


class StoreUnavailable(StoreError):
    """The database is busy or unreachable (e.g. SQLite locked past ``busy_timeout``).

    Retriable: nothing was written (the transaction was rolled back), so the same
    batch can be committed again.
    """

    retriable = True


class UnsupportedStore(StoreError):
    """``store.url`` names a store Parley cannot open (unknown scheme, or a bad option)."""


class LaunchCancelled(LauncherError):
    """A local broker's start was cancelled (Ctrl-C); the nodes it had started are stopped."""
