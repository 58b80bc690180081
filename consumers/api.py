"""What a user writes: a :class:`Consumer` (name, wanted events or states, async handler).

A consumer is a small value; the runtime (:mod:`consumers.runner`) gives it its own Kafka
consumer group and the delivery guarantees documented there. Write one with the
:func:`consumer` decorator::

    @consumer("welcome", topics=("chat",), kinds={"ChatStarted"})
    async def welcome(event: ConsumedEvent) -> None:
        for e in event.domain:
            ...  # use event.event_id as the idempotency key downstream

or, to follow the projector's answer rather than the events, the state topics::

    @consumer("closed-chats", states=("chat",))
    async def closed(event: ConsumedEvent) -> None:
        change = event.state  # a contracts.state_change.StateChange
        ...  # keep the greatest change.version per change.id
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka.structs import ConsumerRecord

from consumers.rebuildable import Rebuildable
from consumers.retry import RetryPolicy
from contracts.position import Position
from contracts.state_change import decode_state_change
from contracts.topics import (
    EVENT_TOPIC_KINDS,
    PROJECTOR,
    STATE_TOPIC_KINDS,
    EventTopicKind,
    StateTopicKind,
    Topics,
)

if TYPE_CHECKING:
    from contracts.domain import DomainEvent
    from contracts.envelope import Envelope
    from contracts.forgotten import Forgotten
    from contracts.state_change import StateChange
    from parley.privacy.ring import KeyRing

__all__ = ["BatchHandler", "ConsumedEvent", "Consumer", "Handler", "ReplayedEvent", "consumer"]


class ConsumedEvent:
    """One record of an event topic — or of a state topic — as a handler sees it.

    ``envelope`` and ``domain`` are decoded on first use (and cached); a record that is not a
    valid envelope raises :class:`contracts.errors.ContractError` there, which is never
    retriable, so the runtime dead-letters it. ``event_id`` is the idempotency key to pass to
    anything downstream: a redelivered event has the same id.

    A record of a state topic (``is_state``) has ``state`` instead: the decoded
    :class:`~contracts.state_change.StateChange`, opened like an envelope (a sealed state's
    personal parts restored, or its facts if the subject's key is gone); its ``event_id`` is
    ``"<kind>:<id>:<version>"``, the same for every delivery of that version.
    """

    # Built once per record on the hot path: it keeps aiokafka's record and reads fields
    # from it on demand instead of copying them; the decoded envelope and domain events are
    # cached in slots that stay unset until first use. The decoded state starts as None
    # instead: a state consumer reads every record's (the search consumer tens of thousands
    # a second), and the AttributeError of an unset slot costs a quarter of decoding one.
    __slots__ = ("_domain", "_envelope", "_record", "_ring", "_state")

    def __init__(self, record: Any, ring: KeyRing | None = None) -> None:
        self._record = record  # an aiokafka ConsumerRecord
        self._state: StateChange | None = None
        # Opens a sealed envelope (docs/privacy.md); the runtime loaded the batch's keys.
        self._ring = ring

    @classmethod
    def of(cls, *, topic: str, partition: int, offset: int, key: str | None, value: bytes,
           timestamp_ms: int = 0, headers: Sequence[tuple[str, bytes]] = ()) -> ConsumedEvent:
        """An event from its parts (for replays, and for unit tests of handlers)."""
        return cls(ConsumerRecord(
            topic=topic, partition=partition, offset=offset, timestamp=timestamp_ms,
            timestamp_type=0, key=key.encode() if key is not None else None, value=value,
            checksum=None, serialized_key_size=-1, serialized_value_size=len(value),
            headers=tuple(headers)))

    @property
    def topic(self) -> str:
        return self._record.topic  # type: ignore[no-any-return]

    @property
    def partition(self) -> int:
        return self._record.partition  # type: ignore[no-any-return]

    @property
    def offset(self) -> int:
        return self._record.offset  # type: ignore[no-any-return]

    @property
    def key(self) -> str | None:
        """The record key (chat, visitor or agent id), None for a record without one."""
        k = self._record.key
        return k.decode(errors="replace") if k is not None else None

    @property
    def value(self) -> bytes:
        return self._record.value  # type: ignore[no-any-return]

    @property
    def timestamp_ms(self) -> int:
        """The record timestamp: when the receiver accepted the webhook."""
        return self._record.timestamp  # type: ignore[no-any-return]

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]:
        return self._record.headers  # type: ignore[no-any-return]

    @property
    def envelope(self) -> Envelope:
        try:
            return self._envelope
        except AttributeError:
            from contracts.envelope import decode_envelope

            env = decode_envelope(self.value)
            if self._ring is not None:
                env = self._ring.open(env)  # its facts only if the subject's key is gone
            self._envelope: Envelope = env
            return self._envelope

    @property
    def is_state(self) -> bool:
        """Whether this record is a state change (``<prefix>.state.<kind>``), not an event."""
        parts = self.topic.rsplit(".", 2)
        return len(parts) == 3 and parts[1] == "state"

    @property
    def state(self) -> StateChange:
        """The state change a state topic's record carries (ContractError if it is not one)."""
        state = self._state
        if state is None:
            value = self._record.value
            if self._ring is not None:  # privacy on: imported only then (cryptography)
                from parley.privacy.states import open_state

                value = open_state(self._ring, value)  # its facts if the subject's key is gone
            state = self._state = decode_state_change(value)
        return state

    @property
    def event_id(self) -> str:
        """The event's stable id: use it as the idempotency key downstream."""
        if self.is_state:
            change = self.state
            return f"{change.kind}:{change.id}:{change.version}"
        return self.envelope.event_id

    @property
    def domain(self) -> list[DomainEvent]:
        """The domain events this record means (empty for event types Parley does not model)."""
        try:
            return self._domain
        except AttributeError:
            from contracts.normalise import normalise

            self._domain: list[DomainEvent] = normalise(self.envelope)
            return self._domain

    @property
    def forgotten(self) -> Forgotten | None:
        """On a forgotten record (an erasure, docs/privacy.md): the aggregate whose personal
        data must go from anything this consumer keeps; else None. Erased states (on state
        topics) say so in ``state.state.erasure`` instead."""
        from contracts.forgotten import erasure_header_of, forgotten_of

        if self.is_state or erasure_header_of(self.headers) is None:
            return None
        return forgotten_of(self.envelope)

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)

    @property
    def replayed(self) -> bool:
        """Whether this delivery is a copy sent by ``parley consumers replay`` (the event,
        its position and its ``event_id`` are the original's all the same)."""
        return False

    @property
    def fetched(self) -> tuple[str, int, int]:
        """(topic, partition, offset) of the record the runtime fetched: the event's own
        position, or for a replayed copy the copy's place on the group's replay topic."""
        r = self._record
        return r.topic, r.partition, r.offset

    def __repr__(self) -> str:
        return f"ConsumedEvent({self.topic}:{self.partition}:{self.offset}, key={self.key!r})"


class ReplayedEvent(ConsumedEvent):
    """A copy from the group's replay topic, seen as the original event (see
    :mod:`contracts.replay`); :attr:`fetched` is where the copy itself was read."""

    __slots__ = ("_fetched",)

    def __init__(self, copy: Any, ring: KeyRing | None = None) -> None:
        from contracts.replay import split_origin

        origin, timestamp_ms, headers = split_origin(copy.headers)
        super().__init__(ConsumerRecord(
            topic=origin.topic, partition=origin.partition, offset=origin.offset,
            timestamp=timestamp_ms, timestamp_type=0, key=copy.key, value=copy.value,
            checksum=None, serialized_key_size=copy.serialized_key_size,
            serialized_value_size=copy.serialized_value_size, headers=headers), ring)
        self._fetched: tuple[str, int, int] = (copy.topic, copy.partition, copy.offset)

    @property
    def replayed(self) -> bool:
        return True

    @property
    def fetched(self) -> tuple[str, int, int]:
        return self._fetched


Handler = Callable[[ConsumedEvent], Awaitable[None]]
"""Handles one event; returning means its side effects are done (durably)."""
BatchHandler = Callable[[Sequence[ConsumedEvent]], Awaitable[None]]
"""Handles a batch (in log order per key); returning means all of its side effects are done."""
Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Consumer:
    """A consumer group's definition.

    Exactly one of ``handle`` (one event at a time) and ``handle_batch`` is set.

    Attributes:
        name: the group's name: consumer group ``<topic_prefix>.consumers.<name>``, dead-letter
            topic ``<topic_prefix>.dlq.<name>``. Letters, digits, ``.``, ``_``, ``-``.
        topics: aggregate kinds whose event topics to read (``"chat"``, ``"visitor"``,
            ``"agent"``, ``"other"``); may be empty when ``states`` is not.
        states: aggregate kinds whose state topics to read (``"chat"`` — chats and their
            messages —, ``"visitor"``, ``"agent"``): the projector's committed states.
        event_types: if set, only envelopes whose ``event_type`` is in it reach the handler
            (state changes are not filtered).
        kinds: if set, only records with a domain event of one of these kinds (the class
            names in :mod:`contracts.domain`, e.g. ``"MessagePosted"``) do.
        concurrency: how many keys are handled at the same time (one key: one at a time).
        retry: attempts and backoff for retriable failures.
        start, stop: optional hooks to open and close the handler's resources.
        secrets: values (API tokens, signing keys) to scrub from logs and dead-letter headers.
        rebuildable: the state the handler keeps, when ``parley consumers rebuild NAME``
            can rebuild it beside the live copy (:mod:`consumers.rebuildable`).
        max_records: records per fetched batch when the consumer's configuration sets none
            (None: the runtime's default, 2000). A batch handler that writes one
            transaction a batch does less work per record with larger batches.
    """

    name: str
    handle: Handler | None = None
    handle_batch: BatchHandler | None = None
    topics: tuple[EventTopicKind, ...] = EVENT_TOPIC_KINDS
    states: tuple[StateTopicKind, ...] = ()
    event_types: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    concurrency: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    start: Hook | None = None
    stop: Hook | None = None
    secrets: tuple[str, ...] = ()
    rebuildable: Rebuildable[ConsumedEvent] | None = None
    max_records: int | None = None

    def __post_init__(self) -> None:
        if (self.handle is None) == (self.handle_batch is None):
            raise ValueError(f"consumer {self.name!r}: set exactly one of handle, handle_batch")
        if not self.name or not all(c.isalnum() or c in "._-" for c in self.name):
            raise ValueError(f"consumer name {self.name!r}: use letters, digits, '.', '_', '-'")
        if self.name == PROJECTOR:  # its dead-letter topic and `parley dlq projector` are taken
            raise ValueError(f"consumer name {self.name!r} is the projector's: choose another")
        unknown = set(self.topics) - set(EVENT_TOPIC_KINDS)
        if unknown or not (self.topics or self.states):
            raise ValueError(f"consumer {self.name!r}: topics must be among {EVENT_TOPIC_KINDS}")
        if set(self.states) - set(STATE_TOPIC_KINDS):
            raise ValueError(f"consumer {self.name!r}: states must be among {STATE_TOPIC_KINDS}")
        if self.concurrency < 1:
            raise ValueError(f"consumer {self.name!r}: concurrency must be >= 1")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError(f"consumer {self.name!r}: max_records must be >= 1")

    @property
    def filtered(self) -> bool:
        return self.event_types is not None or self.kinds is not None

    def topic_names(self, topics: Topics) -> tuple[str, ...]:
        """The Kafka topics this consumer reads: its event topics, then its state topics."""
        return (*(topics.for_aggregate(kind) for kind in self.topics),
                *(topics.state(kind) for kind in self.states))

    def wants(self, event: ConsumedEvent) -> bool:
        """Whether ``event`` passes the type filters (decodes the envelope if there are any)."""
        if event.is_state or event.forgotten is not None:  # every handler is told of erasures
            return True
        if self.event_types is not None and event.envelope.event_type not in self.event_types:
            return False
        if self.kinds is not None:
            # The domain union's tag is the class name ("ChatStarted", "MessagePosted"…).
            return any(type(d).__name__ in self.kinds for d in event.domain)
        return True


def consumer(name: str, *, topics: Sequence[EventTopicKind] | None = None,
             states: Sequence[StateTopicKind] = (),
             event_types: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
             batch: bool = False, concurrency: int = 16, retry: RetryPolicy | None = None,
             ) -> Callable[[Callable[..., Awaitable[None]]], Consumer]:
    """Decorator: turn an async handler into a :class:`Consumer`.

    ``topics`` (event topics) defaults to every aggregate kind, or to none when ``states``
    (state topics) is given: ``@consumer("x", states=("chat",))`` reads chat states only.
    With ``batch=True`` the function receives a sequence of events instead of one.
    """
    if topics is None:
        topics = () if states else EVENT_TOPIC_KINDS

    def wrap(fn: Callable[..., Awaitable[None]]) -> Consumer:
        return Consumer(
            name=name, handle=None if batch else fn, handle_batch=fn if batch else None,
            topics=tuple(topics), states=tuple(states),
            event_types=frozenset(event_types) if event_types is not None else None,
            kinds=frozenset(kinds) if kinds is not None else None,
            concurrency=concurrency, retry=retry or RetryPolicy())

    return wrap
