"""Which source owns an aggregate, and what happens to another source's events for it.

Every authenticated source can send any ids, so without a rule one source could overwrite
another's chats, visitors and agents by reusing their ids. The rule (docs/security.md, hole
10): an aggregate belongs to the source whose event was folded into it first — for chats
and their messages that is the first in log order (a chat's records share one partition),
so every replay and every store agrees. A message belongs to its chat's owner, so another
source cannot add messages to a chat it does not own. An event of any other source changes
nothing in an owned aggregate: :class:`projector.folder.Folder` skips the application, and
:func:`report` counts it (``parley_projector_foreign_source_total{kind,source}``) and logs
it once per event, with the event id and both source names.

The fold itself (:mod:`projector.fold`) stays a pure join of events; the check is here, where
events meet the states they change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from contracts.domain import DomainEvent
from projector.metrics import ProjectorMetrics
from projector.states import AggregateRef, FoldState

__all__ = ["Refused", "foreign_owner", "report"]

log = logging.getLogger("parley.projector.owners")


class Refused(NamedTuple):
    """One (aggregate, event) application skipped because another source owns the aggregate."""

    ref: AggregateRef
    event: DomainEvent
    owner: str


def foreign_owner(ref: AggregateRef, event: Any, prior: FoldState | None,
                  get: Callable[[Any], FoldState | None]) -> str | None:
    """The owner of ``ref`` if it is not ``event``'s source (None: the event may apply).

    ``prior`` is the state of ``ref`` (None: new); ``get`` looks up the states being folded,
    for a message's chat (its chat event comes first, so a new chat is claimed by then).
    """
    holder = get(("chat", event.chat_id)) if ref[0] == "message" else prior
    if holder is None:
        return None
    owner = holder.source
    if owner is None or owner == event.source:
        return None
    return owner


def report(refused: Sequence[Refused], metrics: ProjectorMetrics | None) -> None:
    """Count every refused application; log each refused webhook once, with its event id,
    both source names and the aggregates it did not change (ids only, never the body)."""
    by_webhook: dict[str, tuple[str, set[str], list[str]]] = {}
    for ref, event, owner in refused:
        if metrics is not None:
            metrics.foreign_source.labels(ref.kind, event.source).inc()
        # One webhook's events share its event id, plus a "#…" suffix each.
        base = event.event_id.partition("#")[0]
        _, owners, names = by_webhook.setdefault(base, (event.source, set(), []))
        owners.add(owner)
        name = f"{ref.kind} {ref.id!r}"
        if name not in names:
            names.append(name)
    for event_id, (source, owners, names) in by_webhook.items():
        log.warning("event %s from source %r changed nothing: %s belong%s to source %s",
                    event_id, source, ", ".join(names), "s" if len(names) == 1 else "",
                    " and ".join(map(repr, sorted(owners))))
