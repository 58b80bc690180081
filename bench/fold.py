"""The fold alone, old against new (issue 17, point 6): the same events folded by the fold of
another git revision and by this tree's — the plain fold (``projector.fold``) and its fast
path (``projector.fold_fast``, what the projector runs) — in alternating rounds of one run.

Generates ``--records`` records (``bench/replay_data.py``: both providers, thousands of
concurrent chats), decodes and normalises them once, then times only the fold — every event
into every aggregate it touches (``affected`` / ``apply``) into a dict of states, as a
rebuild's first batches do. The baseline's ``projector/fold.py``, ``fold_people.py`` and
``lww.py`` are read with ``git show REV:…`` into a temporary package (the state types,
``projector.states``, are shared: all must fold into the same states, which is checked
first). Timed with the cyclic collector paused (``gc.disable``), as the projector folds a
batch; the fast path once more with it on, for what that pause buys the fold alone.

    .venv/bin/python bench/fold.py [--baseline main] [--records 100000] [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path[:0] = [str(_ROOT), str(_HERE)]

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from replay_data import generate  # noqa: E402

from contracts.domain import DomainEvent  # noqa: E402
from contracts.envelope import decode_envelope  # noqa: E402
from contracts.normalise import normalise_decoded  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from projector import fold as plain_fold  # noqa: E402
from projector import fold_fast  # noqa: E402
from projector.states import encode_state  # noqa: E402

#: The fold's modules, which import each other by these names.
_MODULES = ("fold", "fold_people", "lww")


def baseline(rev: str, where: Path) -> ModuleType:
    """The fold of git revision ``rev``, imported as ``fold_base.fold``."""
    package = where / "fold_base"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in _MODULES:
        source = subprocess.run(["git", "-C", str(_ROOT), "show", f"{rev}:projector/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        for other in _MODULES:
            source = source.replace(f"projector.{other} ", f"fold_base.{other} ")
            source = source.replace(f"projector.{other}\n", f"fold_base.{other}\n")
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(where))
    return importlib.import_module("fold_base.fold")


def events_of(records: int, seed: int) -> list[DomainEvent]:
    events: list[DomainEvent] = []
    for offset, (_topic, _key, value) in enumerate(generate(records, Topics(prefix="bench"),
                                                            seed=seed)):
        events.extend(normalise_decoded(decode_envelope(value), offset, []))
    return events


def fold_all(module: Any, events: list[DomainEvent]) -> dict[Any, Any]:
    affected: Callable[..., Any] = module.affected
    apply: Callable[..., Any] = module.apply
    states: dict[Any, Any] = {}
    get = states.get
    for event in events:
        for ref in affected(event):
            states[ref] = apply(ref, get(ref), event)
    return states


def _encoded(states: dict[Any, Any]) -> dict[Any, bytes]:
    return {ref: encode_state(state) for ref, state in states.items()}


def timed(module: Any, events: list[DomainEvent], *, paused: bool) -> float:
    gc.collect()
    if paused:
        gc.disable()
    try:
        start = time.process_time()  # CPU seconds: other processes on the machine move it less
        fold_all(module, events)
        return time.process_time() - start
    finally:
        gc.enable()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision of the old fold")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-bench-fold-") as tmp:
        old = baseline(args.baseline, Path(tmp))
        print(f"generating {args.records:,} records ...", flush=True)
        events = events_of(args.records, args.seed)
        print(f"  {len(events):,} domain events", flush=True)
        contenders = {"old": (old, True), "plain": (plain_fold, True), "fast": (fold_fast, True),
                      "fast, gc on": (fold_fast, False)}
        folded = {name: fold_all(module, events) for name, (module, _) in contenders.items()}
        same = all(_encoded(states) == _encoded(folded["old"]) for states in folded.values())
        print(f"  all folds give the same states: {same}", flush=True)
        del folded
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for n in range(1, args.rounds + 1):
            for name, (module, paused) in contenders.items():
                took = timed(module, events, paused=paused)
                seconds[name].append(took)
                print(f"round {n}: {name:<11} {args.records / took:>9,.0f} records/CPU-s", flush=True)
        rate = {name: args.records / statistics.median(s) for name, s in seconds.items()}
        print(f"\nmedian of {args.rounds} alternating rounds, {args.records:,} records "
              f"(baseline {args.baseline}):")
        for name, r in rate.items():
            print(f"  {name:<11} {r:>9,.0f} records per CPU-second")
        # Also the median of each round's own ratio: neighbours in time share the machine's load.
        for new, base in (("plain", "old"), ("fast", "old"), ("fast", "plain"), ("fast", "fast, gc on")):
            paired = statistics.median(b / n for n, b in zip(seconds[new], seconds[base], strict=True))
            print(f"  {new} / {base}: {rate[new] / rate[base]:.3f}x (median of rounds' ratios "
                  f"{paired:.3f}x)")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
