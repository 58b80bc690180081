"""``parley receiver``: the receiver role alone, for production deployments."""

from __future__ import annotations

import argparse
from typing import Any

from parley import loop
from parley.errors import SettingsError
from parley.settings import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "receiver", help="serve POST /webhooks/{source} (needs kafka.bootstrap)")
    parser.set_defaults(handler=_cmd_receiver)


def _cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.kafka.bootstrap:
        raise SettingsError("parley receiver needs kafka.bootstrap (set it in the config file "
                            "or PARLEY_KAFKA__BOOTSTRAP; only `parley run` starts a local broker)")
    if not settings.sources:
        raise SettingsError("no [sources.NAME] configured: the receiver would reject everything")
    return loop.run(_serve(settings), settings.event_loop)


async def _serve(settings: Settings) -> int:
    from parley.http import build_app, serve
    from parley.logs import setup_logging
    from parley.runtime import Runtime
    from receiver.role import ReceiverRole

    setup_logging(settings.log_level, settings.all_secrets())
    rt = Runtime.from_settings(settings)
    await serve(build_app(rt, [ReceiverRole(rt)]), rt)
    return 0
