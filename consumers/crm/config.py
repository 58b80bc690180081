"""``[consumers.crm]``: where the CRM is, how to authenticate, how fields are named there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import msgspec

from consumers.crm.signing import signing_key
from parley.credentials import outbound_credential_problem
from parley.errors import SettingsError

__all__ = ["DEFAULT_ACTIVITY_FIELDS", "DEFAULT_CONTACT_FIELDS", "CrmConfig", "crm_config"]

#: Parley's name → the CRM's JSON field name (override any of them in config).
DEFAULT_CONTACT_FIELDS = {"visitor_id": "external_id", "email": "email", "name": "name",
                          "source": "source"}
DEFAULT_ACTIVITY_FIELDS = {"chat_id": "external_id", "visitor_id": "contact_external_id",
                           "email": "contact_email", "subject": "subject",
                           "transcript": "transcript", "rating": "rating", "agent": "agent",
                           "closed_at": "occurred_at", "source": "source",
                           "completed": "completed", "type": "type"}


class CrmConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the ``crm`` consumer. ``auth_value`` and ``signing_secret`` are
    secrets: kept out of ``repr()`` and never put in a log line, record or error.

    Building one checks ``signing_secret`` (``ValueError``, or ``SettingsError`` through
    :func:`crm_config`): absent, or ``whsec_`` + base64 of at least 24 bytes; and
    ``auth_value``: absent, or neither empty nor a placeholder from an example file."""

    base_url: str
    auth_header: str = "Authorization"
    auth_value: str | None = None
    signing_secret: str | None = None  # whsec_…: Standard Webhooks signature on each request
    contacts_path: str = "/contacts"
    activities_path: str = "/activities"
    contact_fields: dict[str, str] = {}
    activity_fields: dict[str, str] = {}
    timeout_s: float = 10.0
    max_attempts: int = 6  # per event, then dead-lettered
    max_delay_s: float = 30.0  # longest wait between attempts (Retry-After is capped by it)
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_reset_s: float = 30.0  # how long it stays open before one trial request
    state_path: str | None = None  # default: <data_dir>/crm.db
    max_records: int = 500  # records per fetched batch
    stuck_after_s: float = 300.0
    #: true: agent-only notes (whispers, backchannel) go into transcripts too.
    internal_notes: bool = False
    #: Erasure (docs/privacy.md): a forgotten visitor's contact and an erased chat's activity
    #: are deleted in the CRM with ``erase_method`` (``DELETE``, or ``POST`` for CRMs that
    #: take deletions as requests) on these paths, ``{external_id}`` replaced by the visitor
    #: or chat id; ``erase = false`` only forgets them locally.
    erase: bool = True
    erase_method: Literal["DELETE", "POST"] = "DELETE"
    erase_contact_path: str = "/contacts/{external_id}"
    erase_activity_path: str = "/activities/{external_id}"

    def __post_init__(self) -> None:
        # A secret that cannot sign is a start-up error, not one dead letter per event; an
        # empty or placeholder auth_value would send every request unauthenticated or with
        # the example file's words.
        if self.signing_secret is not None:
            signing_key(self.signing_secret)
        if self.auth_value is not None and (problem := outbound_credential_problem(self.auth_value)):
            raise ValueError(f"auth_value {problem}")

    def __repr__(self) -> str:
        return (f"CrmConfig(base_url={self.base_url!r}, auth_header={self.auth_header!r}, "
                f"auth_value={'***' if self.auth_value else None}, "
                f"signing_secret={'***' if self.signing_secret else None})")

    def contact_field(self, name: str) -> str:
        return self.contact_fields.get(name, DEFAULT_CONTACT_FIELDS[name])

    def activity_field(self, name: str) -> str:
        return self.activity_fields.get(name, DEFAULT_ACTIVITY_FIELDS[name])

    def erase_path(self, kind: Literal["contact", "activity"], external_id: str) -> str:
        """The path that erases a contact or activity (``{external_id}`` URL-quoted)."""
        template = self.erase_contact_path if kind == "contact" else self.erase_activity_path
        return template.replace("{external_id}", quote(external_id, safe=""))

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.auth_value, self.signing_secret) if s)


def crm_config(table: Mapping[str, Any]) -> CrmConfig:
    """``[consumers.crm]`` checked and typed; one ``SettingsError`` line if it is wrong."""
    try:
        return msgspec.convert(dict(table), CrmConfig)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid [consumers.crm] configuration: {exc}") from None
