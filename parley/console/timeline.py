"""A chat's timeline: every webhook received for it, what each became, and who has seen it.

Steps (:func:`chat_timeline`):

1. the chat's log positions, from its index in the live projection copy
   (:mod:`projector.log_index`): a key range, never a scan of a topic;
2. the records at those positions, read from Kafka by offset (the console's reader, of no
   group: :meth:`~parley.console.kafka_view.KafkaView.records`);
3. each record decoded and normalised to domain events, and the chat folded over them in
   order from its first record: the fold is pure, so the state after each record is the
   fold of the prefix, as the projector computed it (applications another source owns are
   left out there and here alike, see :mod:`projector.owners`);
4. for each consumer group (the projector's included) whether its committed offset has
   passed the record, and whether it parked or dead-lettered it (its dead-letter topic).

What is shown of a body is what the log holds (the receiver strips Natterly's
``auth_token`` before appending); keys that name credentials are masked again here, in case a
provider sends one Parley does not know of.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.dead_letter import DeadLetterEntry
from contracts.envelope import Envelope, decode_envelope
from contracts.normalise import normalise_decoded
from contracts.position import Position
from parley.console.kafka_view import KafkaView
from parley.privacy.ring import KeyRing
from parley.privacy.seal import subject_in
from projector.clamp import clamp_future
from projector.fold_fast import affected, apply
from projector.owners import foreign_owner
from projector.states import AggregateRef, FoldState
from projector.views import row_for

__all__ = ["MAX_FOLDED", "GroupMark", "TimelineEntry", "chat_timeline", "fold_entries",
           "masked", "pretty"]

log = logging.getLogger("parley.console")

#: The most records read before a page of a chat's timeline to fold the state after each of
#: its records (the fold of the prefix); a page after more is shown without those states.
MAX_FOLDED = 5_000
#: Bytes of a body shown at most (the rest is cut, and says so).
MAX_BODY_BYTES = 64 * 1024
#: Body keys whose values are masked (lower case, substrings): credentials by their names.
SECRET_KEYS = ("token", "secret", "password", "passwd", "signature", "api_key", "apikey",
               "authorization", "credential", "private_key")
_MASK = "[masked]"


@dataclass(frozen=True)
class GroupMark:
    """Where one consumer group stands on one record: ``passed`` (its committed offset is
    past it), ``parked``, ``dead`` (dead-lettered), ``pending`` (not yet), or ``unknown``.
    Groups that read other topics (the search consumer reads the state topics) have none."""

    group: str
    state: str
    detail: str = ""


@dataclass
class TimelineEntry:
    """One record of the chat's log, as the timeline shows it."""

    position: Position
    event_type: str = ""
    event_id: str = ""
    source: str = ""
    received_at: str = ""
    occurred_at: str = ""
    body: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)  # (name, pretty JSON)
    state: str = ""  # the aggregate's view after this record, pretty JSON
    view: dict[str, Any] | None = None  # the same, as data
    problem: str = ""  # why a record could not be shown (gone from the log, not decodable)
    marks: list[GroupMark] = field(default_factory=list)


@dataclass(frozen=True)
class WatchedLog:
    """A group the timeline reports on: its ``name``, Kafka ``group`` id, the ``topics`` it
    reads and its dead-letter topic (None: none to read)."""

    name: str
    group: str
    topics: tuple[str, ...]
    dlq: str | None


def pretty(data: bytes) -> str:
    """JSON bytes indented for reading (as they are when they are not JSON)."""
    try:
        return orjson.dumps(masked(orjson.loads(data)), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def masked(value: Any) -> Any:
    """``value`` with the values of credential-named keys replaced (at any depth)."""
    if isinstance(value, dict):
        return {k: (_MASK if isinstance(k, str) and any(s in k.lower() for s in SECRET_KEYS)
                    and v not in (None, "") else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def fold_entries(ref: AggregateRef, positions: Sequence[Position],
                 records: Mapping[Position, ConsumerRecord[bytes, bytes]],
                 opener: Callable[[Envelope], Envelope] | None = None, *,
                 shown_from: int = 0, fold: bool = True) -> list[TimelineEntry]:
    """Step 3: each record described, and the aggregate ``ref`` (a chat, an agent) folded
    over them (in the given order). ``opener`` opens sealed records (their personal parts) as
    the projector does; see :func:`opener_for`. The first ``shown_from`` records are folded
    but not returned (the prefix of a page); ``fold`` False describes the records only."""
    states: dict[AggregateRef, FoldState] = {}
    out: list[TimelineEntry] = []
    for i, position in enumerate(positions):
        entry = TimelineEntry(position=position)
        if i >= shown_from:
            out.append(entry)
        record = records.get(position)
        if record is None:
            entry.problem = "not read from the log (deleted by retention, or Kafka away)"
            continue
        try:
            env = decode_envelope(record.value or b"")
            if opener is not None:
                env = opener(env)
            events = normalise_decoded(env, record.offset)
        except Exception as exc:  # noqa: BLE001 - shown as the projector saw it: not foldable
            entry.problem = f"not foldable: {type(exc).__name__}"
            continue
        entry.event_type, entry.event_id, entry.source = env.event_type, env.event_id, env.source
        entry.received_at = env.received_at.isoformat().replace("+00:00", "Z")
        entry.occurred_at = env.occurred_at.isoformat().replace("+00:00", "Z")
        body = bytes(env.body)
        entry.body = pretty(body[:MAX_BODY_BYTES]) if len(body) <= MAX_BODY_BYTES else (
            body[:MAX_BODY_BYTES].decode("utf-8", "replace") + f"\n… ({len(body)} bytes, cut)")
        for said in events:
            event = clamp_future(said, [])
            if i >= shown_from:
                entry.events.append((type(event).__name__,
                                     orjson.dumps(masked(orjson.loads(_encode(event))),
                                                  option=orjson.OPT_INDENT_2).decode()))
            for target in affected(event) if fold else ():
                if target != ref:
                    continue
                prior = states.get(target)
                if foreign_owner(target, event, prior, states.get) is None:
                    states[target] = apply(target, prior, event)
        state = states.get(ref)
        if state is not None and i >= shown_from:
            view = row_for(ref, state).view
            entry.view = orjson.loads(view)
            entry.state = pretty(view)
    return out


def _encode(event: object) -> bytes:
    import msgspec

    return msgspec.json.encode(event)


async def group_marks(kafka: KafkaView, watched: Sequence[WatchedLog], chat_id: str,
                      entries: Sequence[TimelineEntry]) -> None:
    """Step 4: fill each entry's ``marks`` (``unknown`` where Kafka did not answer)."""
    tps = sorted({TopicPartition(e.position.topic, e.position.partition) for e in entries})
    committed: dict[str, dict[TopicPartition, int]] | None = None
    letters: dict[str, dict[Position, DeadLetterEntry]] = {}
    try:
        committed = await kafka.committed([w.group for w in watched], tps)
        for w in watched:
            if w.dlq is not None:
                letters[w.name] = {e.origin: e for e in await kafka.dead_letters(w.dlq)
                                   if e.key == chat_id}
    except Exception as exc:  # noqa: BLE001 - Kafka away: marks are unknown
        log.info("timeline: group positions unavailable: %s", type(exc).__name__)
    for entry in entries:
        tp = TopicPartition(entry.position.topic, entry.position.partition)
        for w in watched:
            if entry.position.topic not in w.topics:
                continue  # this group does not read the event topics (search reads states)
            letter = letters.get(w.name, {}).get(entry.position)
            offsets = None if committed is None else committed.get(w.group, {})
            if letter is not None:
                entry.marks.append(GroupMark(w.name, letter.kind, letter.error_type or ""))
            elif offsets is None:
                entry.marks.append(GroupMark(w.name, "unknown", "Kafka did not answer"))
            elif offsets.get(tp, -1) > entry.position.offset:
                entry.marks.append(GroupMark(w.name, "passed"))
            else:
                entry.marks.append(GroupMark(w.name, "pending"))


async def opener_for(ring: KeyRing, records: Iterable[ConsumerRecord[bytes, bytes]]
                     ) -> Callable[[Envelope], Envelope] | None:
    """The key ring's ``open``, once the keys of ``records``' subjects are loaded; None when
    the key store does not answer (sealed records then show their facts only, as the log
    holds them). A forgotten subject's records open to their facts: the key is gone."""
    try:
        # A record that does not decode has no subject here, and says so in its entry.
        await ring.load({s for s in map(subject_in, (r.value for r in records)) if s})
    except Exception as exc:  # noqa: BLE001 - the key store away: facts only, and logged
        log.info("timeline: keys unavailable: %s", type(exc).__name__)
        return None
    return ring.open


async def chat_timeline(kafka: KafkaView, positions: Sequence[Position], chat_id: str,
                        watched: Sequence[WatchedLog], ring: KeyRing | None = None, *,
                        shown_from: int = 0) -> list[TimelineEntry]:
    """Steps 2-4 for the chat's ``positions`` (step 1 is the caller's: the store's index),
    the entries from ``shown_from`` on (a page): the records before it are read and folded
    too, for the state after each shown one, up to :data:`MAX_FOLDED` of them; past that
    the page's records are described without states."""
    fold = shown_from <= MAX_FOLDED
    if not fold:
        positions, shown_from = positions[shown_from:], 0
    try:
        records = await kafka.records(positions)
    except Exception as exc:  # noqa: BLE001 - Kafka away: each entry says so
        log.info("timeline: records unavailable: %s", type(exc).__name__)
        records = {}
    opener = None if ring is None else await opener_for(ring, records.values())
    entries = fold_entries(AggregateRef("chat", chat_id), positions, records, opener,
                           shown_from=shown_from, fold=fold)
    await group_marks(kafka, watched, chat_id, entries)
    return entries
