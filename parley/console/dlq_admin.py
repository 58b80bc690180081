"""Dead-letter operations for the console: the same as ``parley dlq NAME list|replay|skip``
(consumers/dlq_ops.py), bounded by what the operator confirmed.

Which groups: the projector, every known or configured consumer (``parley topics apply``
creates their dead-letter topics) and any group whose dead-letter topic exists. Reading a
group never creates its topic. Replay and skip take ``upto``, the newest dead-letter offset
the confirmation showed: entries written after it are left alone, so doing an action twice
has the effect of doing it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.cli import dead_letter_groups
from consumers.dlq_ops import dlq_replay, dlq_skip
from consumers.errors import ConsumerError
from consumers.registry import load_consumer
from contracts.dead_letter import DeadLetterEntry
from contracts.topics import PROJECTOR, Topics
from parley.console.audit import ActionRefused
from parley.console.kafka_view import KafkaView
from parley.errors import SettingsError
from parley.settings import Settings

__all__ = ["GroupLetters", "UnknownGroup", "dead_letters", "groups", "replay", "skip"]


@dataclass(frozen=True)
class GroupLetters:
    """One group's unresolved dead-letter entries (dead and parked), in dead-letter order;
    ``exists`` False when its dead-letter topic does not exist (nothing ever failed)."""

    name: str
    topic: str
    entries: list[DeadLetterEntry]
    exists: bool = True

    @property
    def dead(self) -> int:
        return sum(1 for e in self.entries if e.kind == "dead")

    @property
    def parked_keys(self) -> int:
        return len({(e.origin.topic, e.key) for e in self.entries})

    @property
    def first_dead(self) -> set[int]:
        """Dead-letter offsets of each key's first dead entry (where its actions are shown)."""
        seen: dict[str, int] = {}
        for e in self.entries:
            if e.kind == "dead":
                seen.setdefault(e.key, e.dlq_offset)
        return set(seen.values())

    @property
    def upto(self) -> int:
        """The newest dead-letter offset among the entries (-1 with none)."""
        return max((e.dlq_offset for e in self.entries), default=-1)


async def _existing_dlq_topics(kafka: KafkaView, topics: Topics) -> set[str]:
    prefix = topics.dlq(PROJECTOR).removesuffix(PROJECTOR)
    return {t for t in await kafka.topic_names() if t.startswith(prefix)}


async def groups(settings: Settings, topics: Topics, kafka: KafkaView) -> list[GroupLetters]:
    """Every group the console shows, the projector first, each with its entries (read with
    the console's reader, ``kafka``)."""
    existing = await _existing_dlq_topics(kafka, topics)
    prefix = topics.dlq(PROJECTOR).removesuffix(PROJECTOR)
    names = [PROJECTOR, *sorted(({*dead_letter_groups(settings)}
                                 | {t.removeprefix(prefix) for t in existing}) - {PROJECTOR})]
    return [await _letters(kafka, topics, name, topics.dlq(name) in existing)
            for name in names]


class UnknownGroup(ActionRefused):
    """A name that is no consumer group here (a page about it is not found)."""


async def dead_letters(settings: Settings, topics: Topics, kafka: KafkaView, name: str
                       ) -> GroupLetters:
    """Group ``name``'s entries; :class:`UnknownGroup` for a name that is no group here."""
    try:
        topic = topics.dlq(name)
    except ValueError as exc:
        raise UnknownGroup(f"no consumer group {name!r}: {exc}") from None
    existing = await _existing_dlq_topics(kafka, topics)
    if topic not in existing and name != PROJECTOR and name not in dead_letter_groups(settings):
        raise UnknownGroup(f"no consumer group {name!r} has dead letters here "
                           f"(no topic {topic})")
    return await _letters(kafka, topics, name, topic in existing)


async def _letters(kafka: KafkaView, topics: Topics, name: str, exists: bool) -> GroupLetters:
    topic = topics.dlq(name)
    if not exists:
        return GroupLetters(name, topic, [], exists=False)
    return GroupLetters(name, topic, await kafka.dead_letters(topic))


async def skip(settings: Settings, topics: Topics, name: str, *, key: str | None,
               topic: str | None, upto: int) -> str:
    """Give up the selected entries up to ``upto``; one line saying how many."""
    n = await dlq_skip(settings.kafka, topics, name, key=key, topic=topic, upto=upto)
    return f"skipped {n} entr{'y' if n == 1 else 'ies'}; their keys flow again"


async def replay(settings: Settings, topics: Topics, name: str, *, key: str | None,
                 topic: str | None, upto: int) -> tuple[bool, str]:
    """Handle the selected entries up to ``upto`` again with the group's own handler (in this
    process, as ``parley dlq NAME replay`` does); (all succeeded, one line)."""
    if name == PROJECTOR:
        raise ActionRefused(
            "the projector's dead letters are replayed by a rebuild: fix the fold, skip them "
            "here, then run `parley projections rebuild` (records that still fail are "
            "dead-lettered again)")
    try:
        consumer = load_consumer(name, settings)
    except (ConsumerError, SettingsError) as exc:
        raise ActionRefused(f"consumer {name!r} cannot run in this process ({exc}); replay "
                            f"with `parley dlq MODULE:ATTRIBUTE replay` where it can") from None
    report = await dlq_replay(settings.kafka, topics, consumer, key=key, topic=topic, upto=upto)
    line = f"replayed {report.replayed} event(s) in {report.rounds} round(s)"
    if report.failed:
        first, error = report.failed[0]
        line += (f"; {len(report.failed)} still failing (key {first.key}: {error}), "
                 f"kept parked")
    return not report.failed, line
