"""The report roll-ups' part of the store contract (:class:`~tests.kit.store_contract.StoreContract`
inherits it): every store's tallies are the sum of the facts of the chats it holds, after
any sequence of commits — redeliveries, changed measures, several commits of one chat in a
batch, concurrent writers — and its live report counts the open chats.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import date

import msgspec

from projector import rollups, timeline
from projector.states import AgentFold, encode_state
from projector.store import Store
from projector.views import Row

_ENC = msgspec.msgpack.Encoder()
D0 = (date(2026, 3, 1) - date(1970, 1, 1)).days  # a Sunday in March
#: Every day tally and month tally there can be in these tests.
EVERYTHING = [("d", 0, 10**6), ("m", 0, 10**6)]


def fact(day: int, agents: Sequence[str] = (), wait_ms: int | None = 30_000,
         first_ms: int | None = 60_000, handle_ms: int | None = None, missed: int = 0,
         hour: int = 9, span: tuple[int, int] | None = None) -> bytes:
    groups = [("all", ""), ("hour", f"{hour:02d}"), *(("agent", a) for a in sorted(agents)),
              ("source", "acme")]
    return _ENC.encode(rollups.Fact(
        day=day, groups=tuple(groups), values=(wait_ms, first_ms, first_ms, first_ms, handle_ms),
        counts=(1, missed, 0, 0, 0, max(0, len(agents) - 1), 2, 1, 0, 0), span=span))


def chat_row(id: str, fact_: bytes, *, status: str = "closed", agent: str | None = None,
             since: int | None = None, version: int = 0) -> Row:
    return Row(kind="chat", id=id, state=f"S{id}.{version}".encode(),
               view=f'{{"id":"{id}","v":{version}}}'.encode(), chat_id=id, status=status,
               source="acme", agent_id=agent, sort_key="5", fact=fact_, waiting_since=since)


def agent_row(id: str, moved: bytes, version: int) -> Row:
    """An agent's row carrying moves of its online time (projector/status_moves.py)."""
    return Row(kind="agent", id=id, state=encode_state(AgentFold(id=id, source="acme")),
               view=f'{{"id":"{id}","v":{version}}}'.encode(), source="acme", sort_key=id,
               fact=moved)


async def tallies(store: Store, dim: str) -> dict[rollups.Key, bytes]:
    """What the store holds for ``dim`` (empty tallies are never read)."""
    found = await store.report_tallies("p1", dim, EVERYTHING)
    assert all(t for _, _, _, t in found)
    return {(g, dim, v, p): t for g, p, v, t in found}


def expected(facts: dict[str, bytes], dim: str,
             moves: Sequence[tuple[str, bytes]] = ()) -> dict[rollups.Key, bytes]:
    """The tallies of ``dim`` summed afresh from the facts of the chats held (and the
    agents' moves)."""
    _, deltas = rollups.changes({}, list(facts.items()), moves)
    summed = rollups.merge({}, deltas)
    return {key: blob for key, blob in summed.items() if blob and key[1] == dim}


class RollupContract:
    """Needs the ``store`` fixture (an open store with an empty copy ``p1``)."""

    async def test_tallies_are_the_sum_of_the_facts_held(self, store: Store) -> None:
        rng = random.Random(7)
        held: dict[str, bytes] = {}
        for _ in range(12):  # commits of random chats, each fact changing or not
            batch = []
            for _ in range(rng.randint(1, 6)):
                chat_id = f"c{rng.randint(1, 8)}"
                f = fact(D0 + rng.randint(0, 40), rng.sample(["a1", "a2", "a3"], rng.randint(0, 2)),
                         wait_ms=rng.choice([None, 0, 999, 30_000]), missed=rng.randint(0, 1),
                         hour=rng.randint(0, 23))
                batch.append(chat_row(chat_id, f))
                held[chat_id] = f  # a later row of one chat in a batch wins
            await store.commit("p1", batch, {})
        for dim in ("all", "agent", "hour", "source"):
            assert await tallies(store, dim) == expected(held, dim)

    async def test_a_redelivery_changes_nothing_and_a_changed_measure_replaces_the_old(
            self, store: Store) -> None:
        """c1 waits 30 s on day 0, then its wait turns out to be 10 s (an earlier acceptance
        arrived late) and it moves to agent a2: the tallies hold only the new fact."""
        first, second = fact(D0, ["a1"], wait_ms=30_000), fact(D0, ["a2"], wait_ms=10_000)
        await store.commit("p1", [chat_row("c1", first)], {})
        await store.commit("p1", [chat_row("c1", first, version=1)], {})  # same fact again
        assert await tallies(store, "all") == expected({"c1": first}, "all")
        await store.commit("p1", [chat_row("c1", second, version=2)], {})
        assert await tallies(store, "agent") == expected({"c1": second}, "agent")
        summary = rollups.summary((await tallies(store, "all")).values())
        assert summary["chats"] == 2  # the day tally and the month tally: one chat each
        assert summary["measures"]["wait_s"]["mean"] == 10.0

    async def test_agents_days_are_the_sum_of_chats_spans_and_agents_moves(
            self, store: Store) -> None:
        """Chats with handle spans across midnight and agent rows with moves of online time
        (each move counts once, in whatever commit it comes), committed in random batches:
        every agent's day and month roll-ups are what the facts held and all the moves give
        summed afresh, and a month's usage is its days'."""
        rng = random.Random(11)
        held: dict[str, bytes] = {}
        moves: list[tuple[str, bytes]] = []
        base = D0 * timeline.DAY_MS
        for _ in range(10):
            batch = []
            for _ in range(rng.randint(1, 5)):
                start = base + rng.randint(0, 3 * timeline.DAY_MS)
                if rng.random() < 0.5:
                    chat_id = f"c{rng.randint(1, 6)}"
                    f = fact(D0, rng.sample(["a1", "a2"], rng.randint(0, 2)),
                             span=(start, start + rng.randint(0, timeline.DAY_MS)))
                    batch.append(chat_row(chat_id, f))
                    held[chat_id] = f
                else:
                    agent = rng.choice(["a1", "a2"])
                    moved = _ENC.encode([(start, start + rng.randint(1, 10**7), 1)])
                    batch.append(agent_row(agent, moved, len(moves)))
                    moves.append((agent, moved))
            await store.commit("p1", batch, {})
        got = await tallies(store, rollups.TIMELINE)
        assert got == expected(held, rollups.TIMELINE, moves)
        for (grain, _, agent, month), blob in got.items():
            if grain == "d":  # what a day keeps as its usage is what its functions give
                assert timeline.day_usage(blob) == timeline.usage(timeline.decode_day(blob))
            if grain == "m":
                days = [timeline.usage(timeline.decode_day(b)) for (g, _, a, day), b in got.items()
                        if g == "d" and a == agent and rollups.month_of(day) == month]
                total = timeline.Usage(levels={})
                for u in days:
                    timeline.add_usage(total, u)
                assert timeline.decode_usage(blob) == total

    async def test_live_counts_the_open_chats(self, store: Store) -> None:
        """c1 and c2 wait (since 100 and 50 µs), c3 and c4 are a1's (active, idle), c5 is
        a2's, c6 closed; then c2 is accepted by a2."""
        f = fact(D0)
        await store.commit("p1", [
            chat_row("c1", f, status="waiting", since=100), chat_row("c2", f, status="waiting", since=50),
            chat_row("c3", f, status="active", agent="a1"), chat_row("c4", f, status="idle", agent="a1"),
            chat_row("c5", f, status="active", agent="a2"), chat_row("c6", f, agent="a1")], {})
        assert await store.report_live("p1") == (2, 50, {"a1": 2, "a2": 1})
        await store.commit("p1", [chat_row("c2", f, status="active", agent="a2", version=1)], {})
        assert await store.report_live("p1") == (1, 100, {"a1": 2, "a2": 2})

    async def test_a_dropped_copy_takes_its_tallies(self, store: Store) -> None:
        await store.commit("p1", [chat_row("c1", fact(D0))], {})
        await store.create_projection("p2")
        assert await store.report_tallies("p2", "all", EVERYTHING) == []
        await store.drop_projection("p2")
        await store.create_projection("p2")
        assert await store.report_tallies("p2", "all", EVERYTHING) == []
        assert len(await tallies(store, "all")) == 2


async def concurrent_writers_add_up(first: Store, second: Store) -> None:
    """Two stores (two projector instances) commit different chats of the same day at once:
    no tally update is lost."""
    async def write(store: Store, prefix: str) -> dict[str, bytes]:
        held = {}
        for i in range(20):
            f = fact(D0, ["a1"], wait_ms=1_000 * i)
            await store.commit("p1", [chat_row(f"{prefix}{i}", f)], {})
            held[f"{prefix}{i}"] = f
        return held

    a, b = await asyncio.gather(write(first, "x"), write(second, "y"))
    assert await tallies(first, "agent") == expected({**a, **b}, "agent")
