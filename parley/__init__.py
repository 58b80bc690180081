"""Parley's shared plumbing: settings, Kafka clients and launcher, HTTP process, CLI."""

from parley.errors import ParleyError, SettingsError
from parley.settings import Settings, load_settings

__all__ = ["ParleyError", "Settings", "SettingsError", "load_settings"]
