"""Finding consumers by name: built-ins, the ``parley.consumers`` entry points, ``module:attr``.

An entry point (or ``module:attribute``) names either a :class:`~consumers.api.Consumer`
or a factory ``fn(ctx: ConsumerContext) -> Consumer`` for consumers that need configuration
or a place on disk. A package registers one in its ``pyproject.toml``::

    [project.entry-points."parley.consumers"]
    welcome = "my_package.welcome:welcome"
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from consumers.api import Consumer
from consumers.errors import ConsumerNotFound
from parley.errors import SettingsError
from parley.settings import Settings

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "ConsumerContext", "KnownConsumer", "consumer_config",
           "known_consumers", "load_consumer"]

ENTRY_POINT_GROUP = "parley.consumers"
BUILTINS: dict[str, str] = {
    "search": "consumers.search.consumer:build",
    "crm": "consumers.crm.consumer:build",
}
CONFIG_ENV = "PARLEY_CONSUMERS_CONFIG"


@dataclass(frozen=True, kw_only=True)
class ConsumerContext:
    """What a consumer factory gets: settings, its ``[consumers.<name>]`` table, a data dir."""

    settings: Settings
    name: str
    config: Mapping[str, Any]

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)


@dataclass(frozen=True, kw_only=True)
class KnownConsumer:
    name: str
    ref: str
    origin: str  # "builtin" | "entry point"


def consumer_config(settings: Settings, name: str) -> dict[str, Any]:
    """The ``[consumers.<name>]`` table, or ``{}``.

    Read from the main configuration's ``settings.consumers`` and, in addition, from the TOML
    file named by ``$PARLEY_CONSUMERS_CONFIG`` (its ``[consumers.<name>]`` tables win).
    """
    table: dict[str, Any] = dict(settings.consumers.get(name, {}))
    path = os.environ.get(CONFIG_ENV)
    if path:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{CONFIG_ENV}: file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{CONFIG_ENV}: {path} is not valid TOML: {exc}") from None
        extra = doc.get("consumers", {}).get(name, {})
        if isinstance(extra, dict):
            table.update(extra)
    return table


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_consumers() -> list[KnownConsumer]:
    out = [KnownConsumer(name=n, ref=r, origin="builtin") for n, r in BUILTINS.items()]
    out += [KnownConsumer(name=n, ref=r, origin="entry point")
            for n, r in sorted(_entry_points().items()) if n not in BUILTINS]
    return out


def _import(ref: str) -> object:
    module_name, _, attr = ref.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConsumerNotFound(f"cannot import {module_name!r} for consumer {ref!r}: {exc}"
                               ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConsumerNotFound(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def load_consumer(name_or_ref: str, settings: Settings) -> Consumer:
    """The consumer called ``name_or_ref`` (built-in or entry point), or at ``module:attr``."""
    if ":" in name_or_ref:
        ref, name = name_or_ref, name_or_ref.rpartition(":")[2]
    else:
        name = name_or_ref
        found = BUILTINS.get(name) or _entry_points().get(name)
        if found is None:
            names = ", ".join(k.name for k in known_consumers())
            raise ConsumerNotFound(f"no consumer named {name!r} (known: {names}; or pass "
                                   f"module:attribute)")
        ref = found
    obj = _import(ref)
    if isinstance(obj, Consumer):
        return obj
    if callable(obj):
        made = obj(ConsumerContext(settings=settings, name=name,
                                   config=consumer_config(settings, name)))
        if isinstance(made, Consumer):
            return made
    raise ConsumerNotFound(f"{ref!r} is neither a Consumer nor a factory returning one")
