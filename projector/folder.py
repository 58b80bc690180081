"""Folding one batch of records: decode, normalise, fold on top of cached or stored states,
and build the rows to commit (steps 3-6 and 8's row building of the commit protocol in
:mod:`projector.runner`'s docstring). Shared by the live runner and by rebuilds, so both
fold identically; the store transaction and the Kafka side stay in the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

import msgspec
from aiokafka.structs import ConsumerRecord

from contracts.domain import DomainEvent
from contracts.envelope import Envelope, decode_envelope
from contracts.forgotten import PARLEY_PROVIDER, forgotten_of
from contracts.normalise import normalise_decoded
from parley.gc_pause import gc_paused  # the fold's batches: see there
from parley.privacy.ring import KeyRing
from projector.clamp import clamp_future
from projector.dlq import DeadLetter, Stage
from projector.erasure import applications, erasing
from projector.fold_fast import affected, apply  # the fold (projector.fold), fast
from projector.log_index import INDEXED, log_row
from projector.metrics import ProjectorMetrics
from projector.outbox import Covers, covers_of, unwrap_state, wrap_state
from projector.owners import Refused, foreign_owner, report
from projector.states import AggregateRef, FoldState, decode_state
from projector.status_moves import agent_moves
from projector.views import Row, row_for

__all__ = ["ApplyFn", "BatchResult", "Folder", "Offsets", "RowFn", "StateLoader", "gc_paused"]

log = logging.getLogger("parley.projector.runner")

Offsets = dict[tuple[str, int], int]
ApplyFn = Callable[[AggregateRef, FoldState | None, DomainEvent], FoldState]
RowFn = Callable[[AggregateRef, FoldState], Row]

# Records between yields to the event loop while folding: the query API shares the loop, so
# a 5,000-record batch must not hold it for the whole fold.
_YIELD_EVERY = 500
# The same in (aggregate, event) applications, for the optimistic fold (about four a record).
_YIELD_EVERY_APPLIES = 2000


class StateLoader(Protocol):
    """What a :class:`Folder` reads: stored states (a :class:`~projector.store.Store` is one)."""

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        ...


@dataclass(kw_only=True)
class BatchResult:
    rows: list[Row] = field(default_factory=list)
    offsets: Offsets = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    states: dict[AggregateRef, FoldState] = field(default_factory=dict)
    #: the log positions each state in ``states`` covers (see :mod:`projector.outbox`)
    covers: dict[AggregateRef, Covers] = field(default_factory=dict)
    records_by_topic: dict[str, int] = field(default_factory=dict)
    events: int = 0
    #: (erasure id, kind, id) of each forgotten record folded (for the erasure ledger)
    erased: list[tuple[str, str, str]] = field(default_factory=list)


class Folder:
    """Steps 3-6 and 8's row building: records in, rows + offsets + dead letters out.

    Shared by the live runner and by rebuilds, so both fold identically. Owns the LRU cache.
    """

    def __init__(self, store: StateLoader, cache_size: int = 100_000,
                 metrics: ProjectorMetrics | None = None, *, apply_fn: ApplyFn = apply,
                 row_fn: RowFn = row_for, fresh: bool = False,
                 ring: KeyRing | None = None) -> None:
        """``fresh``: the projection starts empty and only this folder writes it (a rebuild's
        copy), so an aggregate it never committed cannot be in the store: cache misses for
        those skip the store read. It remembers a hash per committed aggregate for that.

        ``ring``: opens sealed records (docs/privacy.md) before they are folded; a record
        whose key is gone folds to its facts. Without one, sealed records fold to their
        facts. A key store that cannot be reached fails the batch (it is folded again once
        it answers: the projector waits, never skips)."""
        self._store = store
        self._ring = ring
        self._apply = apply_fn  # the real fold; tests inject faults through these two
        self._row = row_fn
        # A state and the log positions it covers (kept in its row, for versions).
        self._cache: OrderedDict[AggregateRef, tuple[FoldState, Covers]] = OrderedDict()
        self._cache_size = cache_size
        self._metrics = metrics
        self._written: set[int] | None = set() if fresh else None

    def clear(self) -> None:
        self._cache.clear()

    def remember(self, states: Mapping[AggregateRef, FoldState],
                 covers: Mapping[AggregateRef, Covers]) -> None:
        """Step 9: cache committed states (never states of a batch that did not commit).

        The cache drops its least recently used states, but never those of this batch,
        however many there are: a rebuild remembers a batch while its transaction is still
        in flight (:class:`projector.rebuild_batches.BatchWriter`), and reads the states it
        misses from the store without waiting for that transaction, which is right only
        because everything the transaction writes is still here."""
        cache = self._cache
        for ref, state in states.items():
            cache[ref] = (state, covers.get(ref, ()))
            cache.move_to_end(ref)
        keep = max(self._cache_size, len(states))
        while len(cache) > keep:
            cache.popitem(last=False)
        if self._written is not None:
            self._written.update(map(hash, states))

    async def fold(self, projection: str, records: Sequence[ConsumerRecord]) -> BatchResult:
        """Fold ``records`` (in offset order per partition) on top of the stored states."""
        # Step 4 (first half): each record decoded once; every key the batch needs, in one
        # key-store round trip.
        decoded = await _decode_all(records)
        if self._ring is not None:
            await self._ring.load({env.subject for env in decoded
                                   if isinstance(env, Envelope) and isinstance(env.subject, str)})
        try:
            with gc_paused():
                return await self._fold(projection, records, decoded, check_rows=False)
        except _RowsFailed:
            # Some aggregate's view cannot be built, and rows are built once per batch, so
            # the record that broke it is unknown: fold again, checking after each record.
            log.warning("building rows failed; folding the batch again record by record")
            with gc_paused():
                return await self._fold(projection, records, decoded, check_rows=True)

    async def _fold(self, projection: str, records: Sequence[ConsumerRecord],
                    decoded: Sequence[Envelope | Exception], *, check_rows: bool) -> BatchResult:
        result = BatchResult()
        offsets, counts, dead = result.offsets, result.records_by_topic, result.dead
        # Step 4: decode, normalise, collect affected aggregates. Every (aggregate, event)
        # application of the batch goes into one flat list, in order; ``spans`` says which
        # slice of it each record owns (and how many events it has), for the careful fold.
        flat: list[tuple[AggregateRef, DomainEvent]] = []
        spans: list[tuple[ConsumerRecord, int, int, int]] = []
        add = flat.append
        total = 0
        forgets: list[tuple[int, str, str, str]] = []  # (span, erasure id, kind, id)
        ring = self._ring
        for n, (rec, env) in enumerate(zip(records, decoded, strict=True), 1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # folding is CPU-bound: let queries in between
            topic = rec.topic
            offsets[(topic, rec.partition)] = rec.offset + 1  # records come in offset order
            counts[topic] = counts.get(topic, 0) + 1
            if isinstance(env, Exception):
                dead.append(_letter(rec, "decode", env))
                continue
            if ring is not None:
                try:
                    env = ring.open(env)
                except Exception as exc:  # noqa: BLE001 - any failure of one record dead-letters it
                    dead.append(_letter(rec, "decode", exc))
                    continue
            start = len(flat)
            if env.provider == PARLEY_PROVIDER:  # Parley's own records: a forget (or unknown)
                forgotten = forgotten_of(env)
                if forgotten is not None:
                    # A Forget stands in for a domain event: only ``erasing`` applies it.
                    flat.extend(applications(forgotten, env.event_id))  # type: ignore[arg-type]
                    spans.append((rec, start, len(flat), 1))
                    forgets.append((len(spans) - 1, forgotten.erasure_id, forgotten.kind,
                                    forgotten.id))
                    total += 1
                continue
            dropped: list[str] = []
            try:
                events = normalise_decoded(env, rec.offset, dropped)
                if dropped:
                    self._dropped(env, dropped)
                clamped: list[str] = []
                for said in events:
                    event = clamp_future(said, clamped)
                    for ref in affected(event):
                        add((ref, event))
                if clamped:
                    self._clamped(env, clamped)
            except Exception as exc:  # noqa: BLE001
                del flat[start:]
                dead.append(_letter(rec, "apply", exc))
                continue
            if events:
                spans.append((rec, start, len(flat), len(events)))
                total += len(events)
        # Step 5: states from the cache, else from the store.
        cache = self._cache
        work: dict[AggregateRef, FoldState] = {}
        covers = result.covers
        missing: list[AggregateRef] = []
        for ref in set(map(_first, flat)):
            cached = cache.get(ref)
            if cached is None:
                missing.append(ref)
            else:
                work[ref], covers[ref] = cached
        if self._metrics is not None:
            self._metrics.cache_hits.inc(len(work))
            self._metrics.cache_misses.inc(len(missing))
        if missing and self._written is not None:
            written = self._written  # a fresh copy: only what this folder wrote can be there
            missing = [ref for ref in missing if hash(ref) in written]
        if missing:
            for ref, data in (await self._store.load(projection, missing)).items():
                covers[ref], data = unwrap_state(data)
                work[ref] = decode_state(ref.kind, data)
        # Step 6: fold. A record is all or nothing: if one of its events fails, its writes
        # are undone and it becomes a dead letter. That takes remembering each prior state,
        # so first fold optimistically, without: the fold is pure and failures are rare.
        # Should anything fail, start over from ``base`` the careful way.
        base = dict(work)  # the states before this batch, to tell what changed
        failed: set[int] = set()  # spans of records that became dead letters
        # Applications skipped because another source owns the aggregate (projector.owners).
        refused: dict[int, Refused] = {}
        apply_fn = erasing(self._apply) if forgets else self._apply
        if check_rows or not await self._fold_all(flat, work, refused, apply_fn):
            work = dict(base)
            refused.clear()
            total = await self._fold_careful(flat, spans, work, dead, failed, refused,
                                             apply_fn, check_rows=check_rows)
        result.events = total
        result.erased = [(erasure, kind, id) for span, erasure, kind, id in forgets
                         if span not in failed]
        if refused:
            report(list(refused.values()), self._metrics)
        _cover(flat, spans, failed, covers, refused)
        # Step 8 (first half): one row per changed aggregate, however many events it took.
        # apply() always returns a new state, so "changed" is "not the state it started with".
        # An agent's row also carries how the batch moved its online time (the roll-ups').
        moves = agent_moves(flat, spans, failed, refused, base, work)
        try:
            row_fn = self._row
            rows = result.rows
            for ref, state in work.items():
                if base.get(ref) is not state:
                    row = row_fn(ref, state)
                    cover = covers[ref]
                    rows.append(_replace(row, state=wrap_state(row.state, cover), covers=cover,
                                         fact=moves.get(ref, row.fact)))
        except Exception as exc:
            raise _RowsFailed from exc
        rows.extend(_log_rows(flat, spans, failed))
        result.states = work
        return result

    def _dropped(self, env: Envelope, fields: list[str]) -> None:
        """Count and log what of a body could not be used (paths only: never values)."""
        log.warning("event %s (%s %r): could not use %s; folded the rest", env.event_id,
                    env.provider, env.event_type, ", ".join(fields))
        if self._metrics is not None:
            for name in fields:
                self._metrics.dropped_fields.labels(env.provider, name).inc()

    def _clamped(self, env: Envelope, fields: list[str]) -> None:
        """Count and log the times from the future that were clamped (names, no values)."""
        log.warning("event %s (%s %r): times later than its receipt allows in %s; clamped",
                    env.event_id, env.provider, env.event_type, ", ".join(fields))
        if self._metrics is not None:
            for name in fields:
                self._metrics.future_times.labels(env.provider, name).inc()

    async def _fold_all(self, flat: list[tuple[AggregateRef, DomainEvent]],
                        work: dict[AggregateRef, FoldState], refused: dict[int, Refused],
                        apply_fn: ApplyFn) -> bool:
        """Apply every event of the batch into ``work`` (but into aggregates another source
        owns: those go to ``refused``, by index in ``flat``); False if any of them failed
        (``work`` is then half-folded and must be thrown away)."""
        get = work.get
        try:
            for lo in range(0, len(flat), _YIELD_EVERY_APPLIES):
                if lo:
                    await asyncio.sleep(0)
                for i, (ref, event) in enumerate(flat[lo:lo + _YIELD_EVERY_APPLIES], lo):
                    prior = get(ref)
                    owner = foreign_owner(ref, event, prior, get)
                    if owner is not None:
                        refused[i] = Refused(ref, event, owner)
                        continue
                    work[ref] = apply_fn(ref, prior, event)
        except Exception:  # noqa: BLE001 - the careful fold finds and dead-letters the record
            return False
        return True

    async def _fold_careful(self, flat: list[tuple[AggregateRef, DomainEvent]],
                            spans: list[tuple[ConsumerRecord, int, int, int]],
                            work: dict[AggregateRef, FoldState], dead: list[DeadLetter],
                            failed: set[int], refused: dict[int, Refused], apply_fn: ApplyFn,
                            *, check_rows: bool) -> int:
        """Apply record by record, each all or nothing (remembering the prior state of each
        write to undo a failed record's), checking the rows too if ``check_rows``; the
        number of events applied. Skips and notes applications as :meth:`_fold_all` does."""
        get = work.get
        total = 0
        for n, (rec, start, end, count) in enumerate(spans, 1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            undo: list[tuple[AggregateRef, FoldState | None]] = []
            skipped: dict[int, Refused] = {}
            try:
                for i, (ref, event) in enumerate(flat[start:end], start):
                    prior = get(ref)
                    owner = foreign_owner(ref, event, prior, get)
                    if owner is not None:
                        skipped[i] = Refused(ref, event, owner)
                        continue
                    undo.append((ref, prior))
                    work[ref] = apply_fn(ref, prior, event)
                if check_rows:
                    for ref, _ in undo:
                        self._row(ref, work[ref])
            except Exception as exc:  # noqa: BLE001
                for ref, prior in reversed(undo):
                    if prior is None:
                        work.pop(ref, None)
                    else:
                        work[ref] = prior
                dead.append(_letter(rec, "apply", exc))
                failed.add(n - 1)
                continue
            refused.update(skipped)
            total += count
        return total


_first = itemgetter(0)
_replace = msgspec.structs.replace


def _cover(flat: list[tuple[AggregateRef, DomainEvent]],
           spans: list[tuple[ConsumerRecord, int, int, int]], failed: set[int],
           covers: dict[AggregateRef, Covers], refused: Mapping[int, Refused]) -> None:
    """Add each folded record's position to the covers of the aggregates it touched.

    Only the last record per partition counts (records come in offset order), and records
    that became dead letters count for nothing, nor do applications ``refused`` (another
    source's): so a state's covers — and its version — depend only on which records were
    folded into it, not on how the log was batched.
    """
    # ref -> {(topic, partition): offset}: one dict lookup per application, and a covers
    # tuple built without sorting for the aggregates of one partition (chats, messages).
    mine: dict[AggregateRef, dict[tuple[str, int], int]] = {}
    get = mine.get
    for n, (rec, start, end, _) in enumerate(spans):
        if n in failed:
            continue
        tp, offset = (rec.topic, rec.partition), rec.offset
        refs: Iterable[AggregateRef] = map(_first, flat[start:end])
        if refused:
            refs = [ref for i, (ref, _) in enumerate(flat[start:end], start) if i not in refused]
        for ref in refs:
            got = get(ref)
            if got is None:
                mine[ref] = {tp: offset}
            else:
                got[tp] = offset
    prior = covers.get
    for ref, got in mine.items():
        for topic, partition, offset in prior(ref, ()):
            got.setdefault((topic, partition), offset)
        if len(got) == 1:  # most aggregates: one partition (a chat's, its messages')
            ((topic, partition), offset), = got.items()
            covers[ref] = ((topic, partition, offset),)
        else:
            covers[ref] = covers_of(got)


def _log_rows(flat: list[tuple[AggregateRef, DomainEvent]],
              spans: list[tuple[ConsumerRecord, int, int, int]], failed: set[int]) -> list[Row]:
    """The log index (:mod:`projector.log_index`): a row per folded record and chat or agent
    it touched (a refused application included: the webhook was received for it)."""
    out: list[Row] = []
    for n, (rec, start, end, _) in enumerate(spans):
        if n in failed:
            continue
        refs = {ref for ref, _ in flat[start:end] if ref.kind in INDEXED}
        out += [log_row(ref.kind, ref.id, rec.topic, rec.partition, rec.offset, rec.timestamp)
                for ref in refs]
    return out


class _RowsFailed(Exception):
    """A view could not be built from a folded state (a fold/view bug for some input)."""


def _letter(rec: ConsumerRecord, stage: Stage, exc: Exception) -> DeadLetter:
    return DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset,
                      timestamp_ms=rec.timestamp, key=rec.key, value=rec.value, stage=stage,
                      error=type(exc).__name__, detail=str(exc))



async def _decode_all(records: Sequence[ConsumerRecord]) -> list[Envelope | Exception]:
    """Each record's envelope, or the exception that decoding it raised (its dead letter)."""
    out: list[Envelope | Exception] = []
    for n, rec in enumerate(records, 1):
        if n % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # decoding a big batch is CPU-bound too
        try:
            # The whole value is checked to be UTF-8 (body included) by decode_envelope.
            out.append(decode_envelope(rec.value))
        except Exception as exc:  # noqa: BLE001 - any failure of one record dead-letters it
            out.append(exc)
    return out
