"""Reports benchmark (issue 22 point 3): the reports API's reads over a year of chats.

1. **Fill** a fresh store (SQLite in a temporary directory, or ``--store-url``) with
   ``--chats`` chats (default 1,000,000) spread over the 365 days of 2026, committed as the
   projector commits them: batches of ``--batch`` chat rows through ``Store.commit``, so the
   roll-ups are kept exactly as in production (each chat's fact stored, tallies moved in the
   same transaction). The facts are generated, not folded (folding a million conversations
   is the replay benchmark's job): 100 agents (a tenth of the chats transferred to a second),
   10 departments, 5 sites, 3 sources, log-normal waits, responses and handle times, 3 %
   missed, 5 % abandoned; the last ``--open`` chats stay open (waiting or active); each
   closed, answered chat is active for its holders over its handle time, and every agent
   is online 8 hours a day (an agent row's moves per day), so the agents' day and month
   roll-ups (projector/timeline.py) are filled too.
2. **Time** each report through the functions the HTTP handlers call
   (``projector.reports``), over the whole year: ``chats`` without grouping and grouped by
   each of agent, department, site, source, day and hour; ``agents`` (the year, and a range
   with 31 edge days read from the agents' day roll-ups); ``live``. Each is run
   ``--runs`` times; the median and the worst are printed (target: under 200 ms).

    .venv/bin/python bench/reports.py [--chats 1000000] [--runs 5] [--store-url URL]

Prints the fill rate (chats/s, with the roll-ups) and the store's size.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projector import reports, rollups
from projector.store import Store
from projector.stores import open_store
from projector.views import Row

YEAR = (date(2026, 1, 1), date(2026, 12, 31))
#: A range with 31 edge days (read from the day roll-ups), the rest from months.
EDGES = (date(2026, 1, 17), date(2026, 12, 15))
DAY_MS = 86_400_000
_ENC = msgspec.msgpack.Encoder()
_DAY0 = (YEAR[0] - date(1970, 1, 1)).days


def _ms(rng: random.Random, median_s: float) -> int:
    return round(rng.lognormvariate(0, 1) * median_s * 1000)


def _chat(rng: random.Random, i: int, chats: int, open_: bool) -> Row:
    day = _DAY0 + i * 365 // chats  # chats arrive in time order, as the log holds them
    agents = [f"agent-{rng.randrange(100):03d}"]
    if rng.random() < 0.1:
        agents.append(f"agent-{rng.randrange(100):03d}")
    missed, abandoned = rng.random() < 0.03, rng.random() < 0.05
    answered = not (missed or abandoned)
    values = (_ms(rng, 40) if answered else None, _ms(rng, 60) if answered else None,
              _ms(rng, 50) if answered else None, _ms(rng, 120) if answered else None,
              None if open_ or not answered else _ms(rng, 600))
    counts = (1, int(missed), int(abandoned), 0, int(rng.random() < 0.2), len(set(agents)) - 1,
              rng.randrange(1, 12), rng.randrange(0, 10) if answered else 0, rng.randrange(0, 3), 1)
    groups = (("all", ""), ("hour", f"{rng.randrange(24):02d}"),
              *(("agent", a) for a in sorted(set(agents))),
              ("department", f"dep-{rng.randrange(10)}"), ("site", f"site-{rng.randrange(5)}"),
              ("source", ("acme", "shop", "help")[rng.randrange(3)]))
    span = None
    if values[4] is not None:  # closed and accepted: active for its holders (their days)
        accepted = day * DAY_MS + rng.randrange(DAY_MS) + (values[0] or 0)
        span = (accepted, accepted + values[4])
    fact = _ENC.encode(rollups.Fact(day=day, groups=groups, values=values, counts=counts,
                                    span=span))
    status = ("waiting" if rng.random() < 0.3 else "active") if open_ else "closed"
    chat_id = f"chat-{i:08d}"
    return Row(kind="chat", id=chat_id, state=b"s", view=b"{}", chat_id=chat_id, status=status,
               source="acme", agent_id=agents[-1] if status == "active" else None,
               sort_key=f"{10**17 - i:018d}", fact=fact,
               waiting_since=int(time.time() * 1e6) - rng.randrange(600_000_000)
               if status == "waiting" else None)



def _shift(rng: random.Random, agent: int, day: int) -> Row:
    """An agent's row moving its online time by one working day: online 8 hours from a
    time between 06:00 and 10:00 UTC (as the folder's moves: projector/status_moves.py)."""
    start = day * DAY_MS + (6 + rng.random() * 4) * 3_600_000
    moves = _ENC.encode([(int(start), int(start) + 8 * 3_600_000, 1)])
    name = f"agent-{agent:03d}"
    return Row(kind="agent", id=name, state=b"a", view=b'{"id":"' + name.encode() + b'"}',
               source="acme", sort_key=name,
               fact=moves)


async def fill(store: Store, chats: int, batch: int, open_chats: int) -> float:
    rng = random.Random(22)
    started = time.perf_counter()
    day = _DAY0 - 1
    for first in range(0, chats, batch):
        rows = [_chat(rng, i, chats, i >= chats - open_chats)
                for i in range(first, min(chats, first + batch))]
        last = _DAY0 + (first + len(rows) - 1) * 365 // chats
        while day < last:  # each agent's working days, as the log reaches them
            day += 1
            rows += [_shift(rng, agent, day) for agent in range(100)]
        await store.commit("bench", rows, {("events", 0): first + len(rows)})
        if first and first % (batch * 50) == 0:
            print(f"  {first:,} chats, {first / (time.perf_counter() - started):,.0f}/s",
                  flush=True)
    return time.perf_counter() - started


async def timed(runs: int, fn: object) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--open", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'state.db'}"
        store = open_store(url)
        await store.open()
        try:
            await store.create_projection("bench")
            seconds = await fill(store, args.chats, args.batch, args.open)
            print(f"filled {args.chats:,} chats in {seconds:.1f} s "
                  f"({args.chats / seconds:,.0f} chats/s with the roll-ups)")
            if args.store_url is None:
                size = sum(p.stat().st_size for p in Path(tmp).iterdir())  # noqa: ASYNC240
                print(f"store: {size / 2**20:,.0f} MiB")
            cases: list[tuple[str, object]] = [
                (f"chats group_by={g or '-'}",
                 lambda g=g: reports.chats_report(store, "bench", YEAR, g))
                for g in (None, *reports.GROUPS)]
            cases += [("agents", lambda: reports.agents_report(store, "bench", YEAR)),
                      (f"agents {EDGES[0]}..{EDGES[1]}",
                       lambda: reports.agents_report(store, "bench", EDGES)),
                      ("  of which chats by agent",
                       lambda: reports.chats_report(store, "bench", EDGES, "agent")),
                      ("  of which agents' time",
                       lambda: reports.agent_times(store, "bench", rollups.plan(
                           (EDGES[0] - date(1970, 1, 1)).days,
                           (EDGES[1] - date(1970, 1, 1)).days))),
                      ("live", lambda: reports.live_report(store, "bench", datetime.now(UTC))),
                      ("chats handled (GET /api/agents)",
                       lambda: reports.chats_handled(store, "bench"))]
            print(f"reports over {YEAR[0]}..{YEAR[1]}, {args.runs} runs each (ms):")
            for name, fn in cases:
                median, worst = await timed(args.runs, fn)
                print(f"  {name:34} median {median:7.1f}   worst {worst:7.1f}", flush=True)
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
