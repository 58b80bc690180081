"""Realistic webhook traffic for ``bench/replay.py``: both providers, thousands of chats.

Bodies are modelled on the golden webhooks (``tests/fixtures/webhooks``): the same members,
nesting and sizes, with generated ids, names, texts and times. Conversations run
concurrently (a pool of open chats, each advanced one webhook at a time in random order), so
the log interleaves chats the way a busy account's does.

- **Natterly** chats (half of them): a visitor's session registration (sometimes a
  ``VisitorCreated`` too), ``ChatInitiated`` with the first message, ``ChatAccepted`` (a
  system line), sometimes a transfer (``ChatAssigned``) or ``ChatIdle``, ``ChatCompleted``
  with the last lines of the transcript, ``ChatClosed``, and often ``ChatRated`` and
  ``ChatTranscriptSent``; one in ten is ignored and closed unanswered. Every chat body
  carries the full chat object (visitor, agent, department, site), whole-second times.
- **ChatShipper** conversations: ``contact.create``, ``conversation.create`` (queued), the
  contact's first messages, ``conversation.update`` (an agent accepted), a dialogue of
  ``message.create.contact.chat`` webhooks (each with the whole conversation), some
  ``message.update`` / ``message.delete``, ``conversation.update`` (closed), sometimes
  ``contact.update``.
- **Agents** of both providers change status now and then (``UserStatusChanged``,
  ``user.update``).

Every body goes through ``contracts.ingest.parse_webhook`` (the receiver's code) to become
the envelope that is produced, keyed and routed exactly as the receiver would.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from contracts.envelope import encode_envelope
from contracts.ingest import parse_webhook
from contracts.topics import Topics

__all__ = ["Record", "generate", "webhooks"]

#: (topic, key, value) of one produced record.
Record = tuple[str, bytes, bytes]

_T0 = 1_700_000_000  # 2023-11-14: whole seconds, Natterly's resolution
_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # noqa: S105 - a fixture's token; stripped by ingest
_ORG = "5c138790ec944f05ff5f6d77"
_N_SITE = {"uuid": "91d068f1-7452-4391-9e06-32e151f76f4f", "name": "My Site", "color": "2ecc71",
           "initials": "MS"}
_DEPARTMENTS = [{"uuid": f"3adf89d1-2c22-4c4d-b72f-c274a08ba3c{i:x}", "name": name}
                for i, name in enumerate(("Sales", "Support", "Billing", "Returns"))]
_FIRST = ("Priya", "Maarten", "Jenny", "Alice", "Bob", "Chen", "Fatima", "Lars", "Sofia", "Tom",
          "Amara", "Jonas", "Yuki", "Omar", "Elena", "Kwame")
_LAST = ("Patel", "de Vries", "Jones", "Baker", "Singh", "Wei", "Haddad", "Nilsen", "Rossi",
         "Murphy", "Okafor", "Berg", "Tanaka", "Aziz", "Popescu", "Mensah")
_CITIES = (("Manchester", "United Kingdom", "GB"), ("Utrecht", "Netherlands", "NL"),
           ("Lyon", "France", "FR"), ("Austin", "United States", "US"), (None, "Germany", "DE"))
_BROWSERS = (("Firefox", "Windows"), ("Chrome", "Macintosh"), ("Safari", "iPhone"),
             ("Chrome", "Android"), ("Edge", "Windows"))
_SUBJECTS = ("Question about delivery", "Refund for order", "Change my address", "Test drive",
             "Invoice copy", "Broken item", "Opening hours", "Cancel subscription")
_LINES = (
    "Hi, I ordered last week and the parcel has not arrived yet.",
    "Could you check the status of order ORD-{n}? It says dispatched but nothing since.",
    "Thanks for waiting, let me look that up for you.",
    "It shipped this morning, tracking is RM{n}GB.",
    "Is there anything else I can help you with today?",
    "Yes please: can I change the delivery address to my office?",
    "Of course. I have updated the address, you will get a confirmation email shortly.",
    "Great, thanks!",
    "Your test drive is booked for Saturday 11:00.",
    "I would like a copy of invoice INV-{n} for my records, with the VAT number on it.",
)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _oid(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(rng: random.Random) -> str:
    return rng.choice(_LINES).format(n=rng.randrange(10_000, 99_999))


class _People:
    """Agents of both providers, shared by all chats."""

    def __init__(self, rng: random.Random, agents: int) -> None:
        self.natterly = [
            {"uuid": _uuid(rng), "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
             "email_address": f"agent{i}@example.co.uk",
             "avatar_url": f"https://cdn.natterly.com/avatars/{i:08x}.png", "admin": i % 7 == 0}
            for i in range(agents)]
        self.shipper = [
            {"id": _oid(rng), "organization": _ORG, "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
             "displayName": rng.choice(_FIRST), "email": f"agent{i}@dealer.example.nl", "role": "agent"}
            for i in range(agents)]


# ------------------------------------------------------------------------------- Natterly


def _n_body(event: str, at: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "timestamp": at, "payload": payload, "auth_token": _TOKEN}


def _n_message(rng: random.Random, chat: str, at: int, *, visitor: dict[str, Any] | None,
               agent: dict[str, Any] | None, text: str | None = None) -> dict[str, Any]:
    if visitor is not None:
        author = {"type": "Visitor", "name": visitor["name"], "avatar_url": "",
                  "details": {"name": visitor["name"], "avatar_url": "", "anonymous": False}}
        by_visitor, system = True, False
    elif agent is not None:
        author = {"type": "User", "name": agent["name"], "avatar_url": agent["avatar_url"],
                  "details": {"uuid": agent["uuid"], "name": agent["name"],
                              "email_address": agent["email_address"]}}
        by_visitor, system = False, False
    else:
        author = {"type": "System", "name": "Natterly", "avatar_url": "", "details": None}
        by_visitor, system = False, True
    return {"uuid": _uuid(rng), "chat": chat, "text": text or _line(rng), "event": system,
            "author": author, "posted_by_visitor": by_visitor, "created_at": at, "updated_at": at,
            "file": None, "formatting": None, "whisper": False}


def _natterly_chat(rng: random.Random, people: _People, clock: Iterator[float]
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
    chat_id, visitor_id, session_id = _uuid(rng), _uuid(rng), _uuid(rng)
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    visitor = {"uuid": visitor_id, "name": name, "email_address": f"{visitor_id[:8]}@example.org",
               "avatar_url": "", "anonymous": False}
    city, country, code = rng.choice(_CITIES)
    browser, platform = rng.choice(_BROWSERS)
    agent = rng.choice(people.natterly)
    started = int(next(clock))
    chat: dict[str, Any] = {
        "uuid": chat_id, "status": "Initiated", "subject": rng.choice(_SUBJECTS),
        "initiated_at": started, "last_message_at": started, "prompt_for_transcript": True,
        "prompt_for_rating": True, "closed_at": 0, "verified": True, "trusted": False,
        "pending_message": None, "pending_message_set_at": 0, "ip_address": "81.2.69.160",
        "city": city, "country": country, "country_code": code, "browser": browser,
        "platform": platform, "stale": False, "time_zone": "Europe/London", "rating": None,
        "department": rng.choice(_DEPARTMENTS), "user": None, "visitor": visitor,
        "visitor_custom_data": {"plan": rng.choice(("gold", "silver")),
                                "order_ref": f"ORD-{rng.randrange(10_000, 99_999)}"},
        "site": _N_SITE}

    def snap(status: str, at: int, **changes: Any) -> dict[str, Any]:
        chat.update(status=status, **changes)
        chat["last_message_at"] = max(chat["last_message_at"], at)
        return dict(chat)

    yield "natterly", _n_body("SessionRegistration", started - 20, {
        "session": {"uuid": session_id, "page_url": "https://shop.example.co.uk/orders",
                    "page_title": "Your orders", "language": "en-GB", "time_zone": "Europe/London",
                    "browser": _uuid(rng), "ip_address": "81.2.69.160", "visitor": visitor,
                    "site": _N_SITE, "active_chat_id": None}, "site": _N_SITE})
    if rng.random() < 0.3:
        yield "natterly", _n_body("VisitorCreated", started - 10, {"visitor": visitor, "site": _N_SITE})
    yield "natterly", _n_body("ChatInitiated", started, {
        "chat": snap("Initiated", started),
        "messages": [_n_message(rng, chat_id, started, visitor=visitor, agent=None)]})
    if rng.random() < 0.1:  # nobody answered
        at = int(next(clock))
        yield "natterly", _n_body("ChatIgnored", at, {"chat": snap("Ignored", at)})
        at = int(next(clock))
        yield "natterly", _n_body("ChatClosed", at, {"chat": snap("Closed", at, closed_at=at)})
        return
    at = int(next(clock))
    yield "natterly", _n_body("ChatAccepted", at, {
        "chat": snap("Accepted", at, user=agent),
        "messages": [_n_message(rng, chat_id, at, visitor=None, agent=None,
                                text=f"{agent['name']} accepted the chat")]})
    if rng.random() < 0.15:  # transferred
        agent = rng.choice(people.natterly)
        at = int(next(clock))
        yield "natterly", _n_body("ChatAssigned", at, {
            "chat": snap("Accepted", at, user=agent, department=rng.choice(_DEPARTMENTS))})
    if rng.random() < 0.2:
        at = int(next(clock))
        yield "natterly", _n_body("ChatIdle", at, {"chat": snap("Idle", at)})
    at = int(next(clock))
    lines = [_n_message(rng, chat_id, at - 60 * (k + 1), visitor=visitor if k % 2 else None,
                        agent=None if k % 2 else agent) for k in range(rng.randrange(2, 7))]
    yield "natterly", _n_body("ChatCompleted", at, {"chat": snap("Completed", at), "messages": lines})
    at = int(next(clock))
    yield "natterly", _n_body("ChatClosed", at, {"chat": snap("Closed", at, closed_at=at)})
    if rng.random() < 0.4:
        at = int(next(clock))
        yield "natterly", _n_body("ChatRated", at, {
            "chat": snap("Closed", at, rating=rng.choice(("Good", "Bad", True, 5)))})
    if rng.random() < 0.3:
        at = int(next(clock))
        yield "natterly", _n_body("ChatTranscriptSent", at, {"chat": snap("Closed", at)})


# ---------------------------------------------------------------------------- ChatShipper

_API = "https://api.web1on1.chat/v2"


def _c_body(rng: random.Random, event: str, at: float, kind: str, actor: str, obj: str,
            summary: str, data: dict[str, Any]) -> dict[str, Any]:
    ts = _iso(at)
    return {"id": _uuid(rng), "event": event, "timestamp": ts, "organization": _ORG,
            "activity": {"@context": "https://www.w3.org/ns/activitystreams", "type": kind,
                         "actor": {"id": actor, "type": "Person"},
                         "object": {"id": obj, "type": "Object"}, "published": ts,
                         "summary": summary},
            "data": data}


def _shipper_chat(rng: random.Random, people: _People, clock: Iterator[float]
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    conv_id, contact_id = _oid(rng), _oid(rng)
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    agent = rng.choice(people.shipper)
    created = next(clock)
    contact = {"id": contact_id, "organization": _ORG, "name": name,
               "email": f"{contact_id[:8]}@example.nl",
               "profile": {"name": name, "email": f"{contact_id[:8]}@example.nl",
                           "telephone": "+31612345678"},
               "conversation": conv_id, "createdAt": _iso(created), "updatedAt": _iso(created)}
    conversation: dict[str, Any] = {
        "id": conv_id, "organization": _ORG, "type": "contact", "name": name, "status": "queued",
        "participants": [], "touchpoint": "web", "createdAt": _iso(created),
        "updatedAt": _iso(created), "contact": contact_id}
    links = {"organization": f"{_API}/organizations/{_ORG}",
             "conversation": f"{_API}/conversations/{conv_id}",
             "contact": f"{_API}/contacts/{contact_id}"}
    conv_url, contact_url = links["conversation"], links["contact"]
    agent_url = f"{_API}/users/{agent['id']}"

    if rng.random() < 0.5:
        yield "chatshipper", _c_body(rng, "contact.create", created - 1, "Create", agent_url,
                                     contact_url, "A contact was created",
                                     {"contact": contact, "links": links})
    yield "chatshipper", _c_body(rng, "conversation.create", created, "Create", contact_url, conv_url,
                                 f"Contact {name} started a conversation",
                                 {"conversation": dict(conversation), "links": links})
    messages: list[str] = []

    def message(at: float, role: str) -> tuple[str, dict[str, Any]]:
        msg_id = _oid(rng)
        messages.append(msg_id)
        conversation["updatedAt"] = _iso(at)
        body: dict[str, Any] = {
            "id": msg_id, "organization": _ORG, "orgPath": _ORG, "conversation": conv_id,
            "type": "chat", "role": role, "contentType": "text/plain", "text": _line(rng),
            "createdAt": _iso(at), "updatedAt": _iso(at)}
        if role == "agent":
            body["user"] = agent["id"]
        actor = agent_url if role == "agent" else contact_url
        return "chatshipper", _c_body(
            rng, "message.create.contact.chat", at, "Create", actor, f"{_API}/messages/{msg_id}",
            f"{name if role == 'contact' else agent['name']} created a chat message",
            {"conversation": dict(conversation), "message": body,
             "links": links | {"message": f"{_API}/messages/{msg_id}"}})

    for _ in range(rng.randrange(1, 3)):
        yield message(next(clock), "contact")
    at = next(clock)
    conversation.update(status="active", updatedAt=_iso(at), participants=[
        {"user": {k: agent[k] for k in ("id", "name", "displayName", "email", "role")},
         "role": "agent", "active": True, "accepted": True, "inbox": True}])
    yield "chatshipper", _c_body(rng, "conversation.update", at, "Update", agent_url, conv_url,
                                 f"User {agent['name']} accepted a conversation",
                                 {"conversation": dict(conversation), "links": links})
    conversation["participants"] = [{"user": agent["id"], "role": "agent", "active": True,
                                     "accepted": True, "inbox": False}]
    for k in range(rng.randrange(4, 17)):
        yield message(next(clock), "agent" if k % 2 == 0 else "contact")
        if rng.random() < 0.08 and messages:  # an edit of a recent message
            at, msg_id = next(clock), rng.choice(messages[-3:])
            yield "chatshipper", _c_body(
                rng, "message.update", at, "Update", agent_url, f"{_API}/messages/{msg_id}",
                "User edited a chat message",
                {"conversation": dict(conversation),
                 "message": {"id": msg_id, "organization": _ORG, "conversation": conv_id,
                             "type": "chat", "role": "agent", "user": agent["id"],
                             "contentType": "text/plain", "text": _line(rng) + " (corrected)",
                             "createdAt": _iso(at - 30), "updatedAt": _iso(at)},
                 "links": links | {"message": f"{_API}/messages/{msg_id}"}})
        if rng.random() < 0.04 and messages:
            at, msg_id = next(clock), rng.choice(messages[-3:])
            yield "chatshipper", _c_body(
                rng, "message.delete", at, "Delete", agent_url, f"{_API}/messages/{msg_id}",
                "User deleted a chat message",
                {"conversation": dict(conversation),
                 "message": {"id": msg_id, "conversation": conv_id, "type": "chat", "role": "agent"},
                 "links": links | {"message": f"{_API}/messages/{msg_id}"}})
    at = next(clock)
    conversation.update(status="closed", updatedAt=_iso(at), participants=[
        {"user": agent["id"], "role": "agent", "active": False, "accepted": False}])
    yield "chatshipper", _c_body(rng, "conversation.update", at, "Update", agent_url, conv_url,
                                 f"User {agent['name']} left a conversation",
                                 {"conversation": dict(conversation),
                                  "links": links | {"user": agent_url}})
    if rng.random() < 0.3:
        at = next(clock)
        yield "chatshipper", _c_body(rng, "contact.update", at, "Update", agent_url, contact_url,
                                     "User updated a contact",
                                     {"contact": {"id": contact_id, "profile": {
                                         "name": name, "email": f"{contact_id[:8]}@mail.example.nl"},
                                         "updatedAt": _iso(at)}})


def _status_change(rng: random.Random, people: _People, at: float) -> tuple[str, dict[str, Any]]:
    if rng.random() < 0.5:
        user = rng.choice(people.natterly)
        return "natterly", _n_body("UserStatusChanged", int(at), {
            "user": user, "status": rng.choice(("Visible", "Offline", "Invisible"))})
    user = rng.choice(people.shipper)
    url = f"{_API}/users/{user['id']}"
    status = rng.choice(("online", "offline", "away"))
    return "chatshipper", _c_body(rng, "user.update", at, "Update", url, url,
                                  f"User {user['name']} went {status}",
                                  {"user": user | {"status": status},
                                   "links": {"user": url}})


# ------------------------------------------------------------------------------- the mix


def webhooks(*, seed: int = 1, concurrent: int = 2_000, agents: int = 150,
             stats: dict[str, int] | None = None) -> Iterator[tuple[str, dict[str, Any], float]]:
    """Generated webhooks, endlessly: ``(provider, body, the clock when it was sent)``.

    ``concurrent`` conversations are open at any time (new ones start as others end), so one
    chat's webhooks are spread among thousands of others. ``stats["chats"]`` (if given)
    counts the conversations started. Natterly bodies carry a fixture's ``auth_token``, last.
    """
    rng = random.Random(seed)
    people = _People(rng, agents)
    now = [float(_T0)]

    def tick() -> Iterator[float]:
        while True:
            now[0] += rng.uniform(0.0, 0.6)
            yield now[0]

    clock = tick()
    open_chats: list[Iterator[tuple[str, dict[str, Any]]]] = []
    chats = 0

    def start() -> Iterator[tuple[str, dict[str, Any]]]:
        nonlocal chats
        chats += 1
        maker = _natterly_chat if rng.random() < 0.5 else _shipper_chat
        return maker(rng, people, clock)

    open_chats = [start() for _ in range(concurrent)]
    while True:
        if rng.random() < 0.02:
            provider, body = _status_change(rng, people, next(clock))
        else:
            i = rng.randrange(len(open_chats))
            try:
                provider, body = next(open_chats[i])
            except StopIteration:
                open_chats[i] = start()
                continue
        if stats is not None:
            stats["chats"] = chats
        yield provider, body, now[0]


def generate(n: int, topics: Topics, *, seed: int = 1, concurrent: int = 2_000,
             agents: int = 150, stats: dict[str, int] | None = None) -> Iterator[Record]:
    """``n`` records for ``topics``: envelopes of generated webhooks, as the receiver writes them.

    ``concurrent`` conversations are open at any time (new ones start as others end), so one
    chat's webhooks are spread over the log among thousands of others. ``stats["chats"]``
    (if given) counts the conversations started.
    """
    received = timedelta(milliseconds=250)
    sent = webhooks(seed=seed, concurrent=concurrent, agents=agents, stats=stats)
    for provider, body, now in itertools.islice(sent, n):
        raw = orjson.dumps(body)
        at = datetime.fromtimestamp(now, UTC) + received
        env = parse_webhook(provider, "bench", raw, received_at=at)
        yield topics.for_aggregate(env.aggregate), env.record_key, encode_envelope(env)
