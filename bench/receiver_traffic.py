"""The webhooks ``bench/receiver.py``'s load generator sends (``--traffic``), and their sources.

- ``fixed`` (the default, as every figure before 2026-12-07): one 1.7 kB pretty-printed
  Natterly ``ChatInitiated`` whose chat id, timestamp, message id and order number change
  from body to body (:func:`fixed_body`), 4,096 of them cycled. In aiokafka's zstd batches
  such look-alike records compress to 60 to 230 bytes each, far better than real traffic.
- ``mixed``: real-looking traffic of both providers from ``bench/replay_data.py`` (bodies
  modelled on the golden fixtures: Natterly sessions, chats with visitors, agents and
  messages; ChatShipper contacts, conversations and messages; agents' status changes; with
  generated ids, names, texts and times; compact JSON, as that generator writes it).
  Conversations run interleaved, :data:`MIXED_OPEN` of them open at a time unless
  ``PARLEY_BENCH_CHATS`` says otherwise, each with its own chat (so its own keys), as real
  chats are: about one webhook in twelve starts a conversation, and with a fresh key store
  one in five needs a subject's first key (4,215 subjects in 20,000 webhooks, 1,000 open
  conversations: chats, visitors, contacts). The first
  :data:`MIXED_SKIP` webhooks (the generator's start, when every open conversation is at its
  beginning) are left out; the next :data:`MIXED_BODIES` are cycled.

Each body goes to its provider's source, authenticated as the receiver checks it: a Natterly
body carries :data:`TOKEN` as its last member ``auth_token`` (Natterly's own order), a
ChatShipper body comes with ``X-Hub-Signature: sha1=<HMAC-SHA1(SECRET, raw body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import uuid
from typing import Any

NATTERLY_SOURCE, CHATSHIPPER_SOURCE = "acme", "shipper"  # /webhooks/<source>
TOKEN = "bench-natterly-token-4f1c"  # noqa: S105 - a throwaway token for this run
SECRET = "bench-chatshipper-secret-7d2e"  # noqa: S105 - a throwaway HMAC key for this run
TRAFFIC = ("fixed", "mixed")
FIXED_BODIES = 4096
#: mixed: conversations open at a time (replay_data's default), webhooks left out at the
#: start and webhooks cycled (more than a 12 s receiver run sends at 3,000 a second)
MIXED_OPEN, MIXED_SKIP, MIXED_BODIES = 2000, 20_000, 40_000
JSON = {"Content-Type": "application/json"}

#: (url, body, headers) of one request
Request = tuple[str, bytes, dict[str, str]]


def sources() -> dict[str, Any]:
    """The receiver's sources for either traffic: ``{name: SourceSettings}``."""
    from parley.settings import SourceSettings

    return {NATTERLY_SOURCE: SourceSettings(provider="natterly", auth_tokens=(TOKEN,)),
            CHATSHIPPER_SOURCE: SourceSettings(provider="chatshipper", secrets=(SECRET,))}


def fixed_body(i: int) -> bytes:
    """A realistic ~1.7 kB Natterly ChatInitiated body; one chat per body (keys spread).

    Members in the order of Natterly's own example (docs/providers.md;
    tests/fixtures/webhooks/natterly/chat_initiated_seed.json): event, timestamp, payload, then
    auth_token last."""
    # PARLEY_BENCH_CHATS=N (bench/privacy.py): N chats, each with several webhooks.
    chat = str(uuid.UUID(int=i % int(os.environ.get("PARLEY_BENCH_CHATS") or 2**64) + 1))
    return json.dumps({
        "event": "ChatInitiated", "timestamp": 1517228896 + i,
        "payload": {
            "chat": {"uuid": chat, "status": "Initiated", "subject": "Question about my order",
                     "initiated_at": 1517228896, "last_message_at": 1517228896,
                     "prompt_for_transcript": True, "prompt_for_rating": True, "closed_at": 0,
                     "verified": False, "trusted": False, "pending_message": None,
                     "ip_address": "2a02:8010:6006:0:9854:480a:c38d:dcd8", "city": None,
                     "country": "United Kingdom", "country_code": "GB", "browser": "Chrome",
                     "platform": "Macintosh", "stale": False, "time_zone": "Europe/London",
                     "rating": None,
                     "department": {"uuid": "3adf89d1-2c22-4c4d-b72f-c274a08ba3cf", "name": "Sales"},
                     "user": None,
                     "visitor": {"name": "Anonymous Chicken", "avatar_url": "", "anonymous": True},
                     "visitor_custom_data": {},
                     "site": {"uuid": "91d068f1-7452-4391-9e06-32e151f76f4f", "name": "My Site",
                              "color": "2ecc71", "initials": "MS"}},
            "messages": [{"uuid": str(uuid.UUID(int=10**9 + i)), "chat": chat,
                          "text": "Hello, I have a question about order #" + str(i),
                          "event": False, "created_at": 1517228896, "updated_at": 1517228896,
                          "author": {"type": "AnonymousAnimal", "name": "Anonymous Chicken",
                                     "avatar_url": ""}, "posted_by_visitor": True}]},
        "auth_token": TOKEN,
    }, indent=2).encode()


def mixed_webhooks(n: int = MIXED_BODIES, *, skip: int = MIXED_SKIP,
                   open_chats: int | None = None) -> list[tuple[str, bytes]]:
    """``n`` ``(provider, raw body)`` of mixed traffic (the module docstring), Natterly bodies
    with :data:`TOKEN`. ``open_chats`` defaults to ``PARLEY_BENCH_CHATS``, else MIXED_OPEN."""
    import orjson
    from replay_data import webhooks  # this folder is on sys.path (bench/receiver.py)

    if open_chats is None:
        open_chats = int(os.environ.get("PARLEY_BENCH_CHATS") or MIXED_OPEN)
    out = []
    for provider, body, _ in itertools.islice(
            webhooks(concurrent=open_chats), skip, skip + n):
        if provider == "natterly":  # this run's token, last, whatever the generator put
            body = {k: v for k, v in body.items() if k != "auth_token"} | {"auth_token": TOKEN}
        out.append((provider, orjson.dumps(body)))
    return out


def requests(traffic: str, base: str = "") -> list[Request]:
    """The requests to cycle over for ``traffic`` (one of :data:`TRAFFIC`) to the server at
    ``base`` (``http://host:port``), built and signed before any is sent."""
    if traffic == "fixed":
        path = f"{base}/webhooks/{NATTERLY_SOURCE}"
        return [(path, fixed_body(i), JSON) for i in range(FIXED_BODIES)]
    if traffic != "mixed":
        raise ValueError(f"unknown traffic {traffic!r}: one of {', '.join(TRAFFIC)}")
    key = SECRET.encode()
    out: list[Request] = []
    for provider, body in mixed_webhooks():
        if provider == "natterly":
            out.append((f"{base}/webhooks/{NATTERLY_SOURCE}", body, JSON))
        else:
            signature = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
            out.append((f"{base}/webhooks/{CHATSHIPPER_SOURCE}", body,
                        JSON | {"X-Hub-Signature": signature}))
    return out
