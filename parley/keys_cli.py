"""``parley keys new-master`` and ``parley keys rewrap``: the master key's life (docs/privacy.md).

Rotation, without rewriting the log: (1) ``parley keys new-master`` prints a new key;
(2) configure it as ``privacy.master_key`` (or its file) and move the old one into
``privacy.previous_master_keys``, then restart the processes; (3) ``parley keys rewrap``
wraps every data key under the new master key (the data keys themselves, and so every
record sealed with them, are unchanged); (4) remove the old key from the configuration.
"""

from __future__ import annotations

import argparse
from typing import Any

from parley import loop
from parley.privacy.config import build_key_ring
from parley.privacy.master import new_master_key
from parley.settings import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``parley keys …`` to the top-level parser."""
    keys = subparsers.add_parser("keys", help="the master key and the data keys it wraps")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ksub.add_parser("new-master", help="print a new random master key (base64; store it as a "
                                       "secret)").set_defaults(handler=_cmd_new_master)
    ksub.add_parser("rewrap", help="wrap every data key under the current master key (after "
                                   "a rotation; the log is not rewritten)"
                    ).set_defaults(handler=_cmd_rewrap)


def _cmd_new_master(args: argparse.Namespace, settings: Settings) -> int:
    print(new_master_key())
    return 0


def _cmd_rewrap(args: argparse.Namespace, settings: Settings) -> int:
    ring = build_key_ring(settings)  # a missing or malformed master key: one line

    async def main() -> int:
        try:
            return await ring.rewrap()
        finally:
            await ring.close()

    n = loop.run(main(), settings.event_loop)
    print(f"rewrapped {n} data keys under master key {ring.master_id}")
    return 0
