"""The dead-letter pages (``/console/deadletters``): every group's dead letters, the
projector's too, with error and origin; replay or skip one key or all, after a confirmation.

Flow of an action (each step its own request, so a reload or a double click does no harm):

1. ``GET …/{group}/confirm?action=replay|skip[&key=K&topic=T]`` shows exactly what the
   action will touch, and a form with a fresh action id and ``upto``, the newest
   dead-letter offset shown;
2. ``POST …/{group}/{action}`` (CSRF-checked by the session guard) runs it once
   (:func:`parley.console.audit.run_once`: a known action id is not run again; the entries
   are bounded by ``upto``) and is audited; it answers 303 to
3. ``GET …/{group}/actions/{id}``, the action's audit record.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, TypeVar

from aiohttp import web
from aiokafka.errors import KafkaError

from contracts.ops import AuditOutcome
from parley.console import dlq_admin
from parley.console.app import Console, NavItem, PageError, Route, Section, console_of, session_of
from parley.console.audit import ActionRefused, actor_of, find_action, new_action_id, run_once
from parley.console.dlq_admin import GroupLetters, UnknownGroup

__all__ = ["SECTION"]

_KEY_MAX_CHARS = 1000
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_READ_TIMEOUT_S = 15.0
Action = Literal["replay", "skip"]
T = TypeVar("T")


async def _kafka(what: Callable[[], Awaitable[T]]) -> T:
    """``what()``; Kafka down is a 503 page that says so, an unknown group a 404 page, other
    bad input a 400 page."""
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S):
            return await what()
    except UnknownGroup as exc:
        raise PageError(404, str(exc)) from None
    except ActionRefused as exc:
        raise PageError(400, str(exc)) from None
    except (KafkaError, OSError, TimeoutError) as exc:
        raise PageError(503, f"down: the dead-letter topics cannot be read now "
                             f"({type(exc).__name__}); Kafka may be unreachable") from None


def _group(request: web.Request) -> str:
    return request.match_info["group"]


def _action(raw: str | None) -> Action:
    if raw == "replay":
        return "replay"
    if raw == "skip":
        return "skip"
    raise PageError(400, "the action is replay or skip")


def _selection(values: Mapping[str, object]) -> tuple[str | None, str | None]:
    """The optional ``key`` and ``topic`` of a request, checked."""
    key, topic = values.get("key"), values.get("topic")
    key = key if isinstance(key, str) and key else None
    topic = topic if isinstance(topic, str) and topic else None
    if key is not None and len(key) > _KEY_MAX_CHARS:
        raise PageError(400, f"a key is at most {_KEY_MAX_CHARS} characters")
    if topic is not None and not _TOPIC.fullmatch(topic):
        raise PageError(400, "the topic is not a Kafka topic name")
    return key, topic


async def index(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    groups = await _kafka(lambda: dlq_admin.groups(console.rt.settings, console.rt.topics,
                                                    console.kafka))
    return console.render(request, "deadletters.html", title="Dead letters", groups=groups)


async def group_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    letters = await _letters(console, _group(request))
    return console.render(request, "deadletters_group.html",
                          title=f"Dead letters of {letters.name}", group=letters)


async def _letters(console: Console, name: str) -> GroupLetters:
    return await _kafka(lambda: dlq_admin.dead_letters(console.rt.settings, console.rt.topics,
                                                       console.kafka, name))


async def confirm(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    action = _action(request.query.get("action"))
    key, topic = _selection(request.query)
    letters = await _letters(console, _group(request))
    chosen = [e for e in letters.entries
              if (key is None or e.key == key) and (topic is None or e.origin.topic == topic)]
    upto = max((e.dlq_offset for e in chosen), default=-1)
    return console.render(request, "deadletters_confirm.html",
                          title=f"{action.capitalize()} dead letters of {letters.name}?",
                          group=letters, action=action, key=key, topic=topic, entries=chosen,
                          upto=upto, action_id=new_action_id())


async def act(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name, action = _group(request), _action(request.match_info["action"])
    form = await request.post()
    key, topic = _selection(form)
    raw_upto, raw_id = form.get("upto"), form.get("action_id")
    if not isinstance(raw_upto, str) or not raw_upto.lstrip("-").isdigit():
        raise PageError(400, "the form carries no dead-letter offset: reload the page")
    upto = int(raw_upto)
    action_id = raw_id if isinstance(raw_id, str) else ""
    session = session_of(request)
    settings, topics = console.rt.settings, console.rt.topics
    target = {"group": name, "key": key or "*", "topic": topic or "*", "upto": str(upto)}

    async def do() -> tuple[AuditOutcome, str]:
        await dlq_admin.dead_letters(settings, topics, console.kafka, name)  # a group Parley knows
        if action == "skip":
            return "done", await dlq_admin.skip(settings, topics, name, key=key, topic=topic,
                                                upto=upto)
        ok, line = await dlq_admin.replay(settings, topics, name, key=key, topic=topic,
                                          upto=upto)
        return ("done" if ok else "failed"), line

    await _kafka(lambda: run_once(
        settings.kafka, topics, action_id=action_id,
        actor=actor_of(session.token if session else None), action=f"dlq.{action}",
        target=target, do=do, secrets_=settings.all_secrets()))
    raise web.HTTPSeeOther(f"/console/deadletters/{name}/actions/{action_id}")


async def done(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name, action_id = _group(request), request.match_info["action_id"]
    record = await _kafka(lambda: find_action(console.rt.settings.kafka, console.rt.topics,
                                              action_id))
    if record is None or record.target.get("group") != name:
        raise PageError(404, "no such action of this group in the audit")
    return console.render(request, "deadletters_done.html", title="Dead-letter action",
                          group=name, record=record)


SECTION = Section(
    nav=(NavItem("Dead letters", "/console/deadletters"),),
    routes=(Route("GET", "/deadletters", index),
            Route("GET", "/deadletters/{group}", group_page),
            Route("GET", "/deadletters/{group}/confirm", confirm),
            Route("POST", "/deadletters/{group}/{action}", act),
            Route("GET", "/deadletters/{group}/actions/{action_id}", done)),
)
