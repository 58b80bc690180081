"""``parley visitors forget ID | --email E | --chat ID``, ``forget-status ID``, ``export ID``.

Erasure (GDPR art. 17) and access (art. 15) requests for one data subject, resolved from the
live projection (docs/privacy.md, docs/operations.md "An erasure request, step by step").
An id, email or chat that matches nothing is one line and exit 1, and changes nothing.
Every error is one ``parley: error: …`` line on stderr and exit 1, as in the rest of the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from parley.settings import Settings

if TYPE_CHECKING:
    from parley.privacy.keys import KeyStore
    from projector.forget import Subject
    from projector.store import Store

__all__ = ["open_keys", "register"]


def register(subparsers: Any) -> None:
    """Add ``parley visitors …`` to the top-level parser."""
    visitors = subparsers.add_parser("visitors", help="a visitor's data: forget, its erasure "
                                                      "ledger, export")
    vsub = visitors.add_subparsers(dest="visitors_command", required=True, metavar="ACTION")
    forget = vsub.add_parser("forget", help="erase a visitor (or one chat): destroy their keys, "
                                            "erase the projection and search, tell every group")
    _who(forget)
    forget.add_argument("--no-wait", action="store_true",
                        help="return once the forget is published, without waiting for the "
                             "live projection to erase it")
    forget.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                        help="how long to wait for the live projection (default 60 s)")
    forget.set_defaults(handler=_cmd_forget, local_kafka=True)
    status = vsub.add_parser("forget-status", help="the erasure ledger of a visitor's (or "
                                                   "chat's) latest forget, per projection "
                                                   "copy and consumer group")
    status.add_argument("id", help="visitor id, chat id or subject id")
    status.set_defaults(handler=_cmd_status, local_kafka=True)
    export = vsub.add_parser("export", help="everything held about a visitor, as JSON "
                                            "(an access request)")
    _who(export)
    export.set_defaults(handler=_cmd_export)


def _seconds(raw: str) -> float:
    """``--timeout``: checked while parsing, before a key is destroyed (a forget cannot be
    undone, so a wait it could never finish must not start it)."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {raw!r}")
    return value


def _who(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("id", nargs="?", help="the visitor's id")
    group.add_argument("--email", help="the visitor's email (case ignored)")
    group.add_argument("--chat", metavar="ID", help="a chat of the visitor (a chat without a "
                                                    "known visitor: that chat alone)")


def open_keys(settings: Settings) -> KeyStore | None:
    """The key store of ``settings`` (``privacy.key_store``, else beside the state store),
    not yet opened; None with ``privacy.encrypt = false`` and no ``privacy.key_store``:
    then nothing was sealed, a forget erases the projection, search and groups, and the
    command says that the log's copies stay readable."""
    from parley.privacy.config import key_store_url, master_keys
    from parley.privacy.keys import open_key_store

    if not settings.privacy.encrypt and not settings.privacy.key_store:
        return None
    return open_key_store(key_store_url(settings), master_keys(settings))


def _error(text: str) -> int:
    """``text`` as one ``parley: error:`` line on stderr (as :func:`parley.cli.main` reports
    every error), and the exit status 1."""
    print(f"parley: error: {text}", file=sys.stderr)
    return 1


async def _resolve(store: Store, args: argparse.Namespace) -> Subject:
    from projector.forget import resolve

    return await resolve(store, visitor=args.id, email=args.email, chat=args.chat)


def _cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.topics import Topics
    from projector.forget import UnknownSubject, erased_in, forget
    from projector.stores import open_store

    async def main() -> int:
        store = open_store(settings.store.url)
        keys = open_keys(settings)
        await store.open()
        if keys is not None:
            await keys.open()
        try:
            try:
                subject = await _resolve(store, args)
            except UnknownSubject as exc:
                return _error(f"{exc}; nothing changed")
            request = await forget(subject, store=store, kafka=settings.kafka,
                                   topics=Topics(prefix=settings.kafka.topic_prefix), keys=keys)
            sys.stdout.write(
                f"forgetting {subject.subject}: {len(subject.visitors)} visitor(s), "
                f"{len(subject.chats)} chat(s), {request.keys_destroyed} key(s) destroyed; "
                f"erasure {request.erasure_id}\n")
            if keys is None:
                sys.stdout.write("no key store: the log's copies of their data stay readable "
                                 "(docs/privacy.md)\n")
            if args.no_wait:
                return 0
            started = time.monotonic()
            total = len(request.aggregates)
            while True:
                live = await store.live_projection()
                done = [] if live is None else await erased_in(
                    store, live, request.erasure_id, request.aggregates)
                if len(done) == total:
                    sys.stdout.write(f"projection {live}: erased {total}/{total} in "
                                     f"{time.monotonic() - started:.1f} s; groups: "
                                     f"parley visitors forget-status {subject.visitor or '…'}\n")
                    return 0
                if time.monotonic() - started > args.timeout:
                    return _error(f"projection {live}: erased {len(done)}/{total} after "
                                  f"{args.timeout:g} s (is the projector running?); see "
                                  "parley visitors forget-status")
                await asyncio.sleep(0.2)
        finally:
            if keys is not None:
                await keys.close()
            await store.close()

    return asyncio.run(main())


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.topics import Topics
    from parley.erasure_ledger import read_ledger
    from projector.erasure_status import erasure_status, latest_request, render
    from projector.stores import open_store

    async def main() -> int:
        entries = await read_ledger(settings.kafka, Topics(prefix=settings.kafka.topic_prefix))
        request = latest_request(entries, args.id)
        if request is None:
            return _error(f"no erasure recorded for {args.id!r}")
        store = open_store(settings.store.url)
        await store.open()
        try:
            sys.stdout.write(render(await erasure_status(store, entries, request)))
        finally:
            await store.close()
        return 0

    return asyncio.run(main())


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from projector.forget import UnknownSubject
    from projector.stores import open_store
    from projector.subject_export import export_subject

    async def main() -> int:
        store = open_store(settings.store.url)
        await store.open()
        try:
            try:
                subject = await _resolve(store, args)
            except UnknownSubject as exc:
                return _error(str(exc))
            document = await export_subject(store, subject)
        finally:
            await store.close()
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(document)).decode() + "\n")
        return 0

    return asyncio.run(main())
