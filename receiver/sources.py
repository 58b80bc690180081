"""Configured webhook sources: a name (the URL segment), a provider and its verifier.

Built once from settings at start-up, so keys are decoded and checked before the first
request, and a misconfigured secret stops the process with a message naming the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from parley.errors import SettingsError
from parley.settings import ProviderName, SourceSettings
from receiver.signatures import BodyToken, HubSignature, StandardWebhooks

__all__ = ["Source", "build_sources"]

Verifier = BodyToken | HubSignature | StandardWebhooks


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    provider: ProviderName
    verifier: Verifier

    def __repr__(self) -> str:  # the verifier holds keys; keep them out of any repr
        return f"Source(name={self.name!r}, provider={self.provider!r})"


def build_sources(configured: Mapping[str, SourceSettings]) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for name, cfg in configured.items():
        verifier: Verifier
        try:
            match cfg.provider:
                case "natterly":
                    verifier = BodyToken(cfg.auth_tokens)
                case "chatshipper":
                    verifier = HubSignature(cfg.secrets)
                case "standard":
                    verifier = StandardWebhooks(cfg.secrets, cfg.tolerance_s)
        except ValueError as exc:
            raise SettingsError(f"sources.{name}: {exc}") from None
        sources[name] = Source(name, cfg.provider, verifier)
    return sources
