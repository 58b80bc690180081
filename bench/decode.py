"""Decode benchmark (issue 3, point 9): typed msgspec vs json.loads + dicts vs pydantic v2.

Every golden webhook body (tests/fixtures/webhooks) goes through the receiver step (body to
Envelope: validate, read event, time and aggregate id, cut Natterly's token out of the raw
bytes, derive the event id) and the projector step (Envelope to domain events: decode the
stored body in full and map it). Three pipelines do exactly that work:

- ``msgspec``: ``contracts.ingest.parse_webhook`` + ``contracts.normalise.normalise``;
- ``json``: ``json.loads`` and dict access, mirroring the contracts' rules line by line
  (``decode_json_natterly.py``, ``decode_json_chatshipper.py``);
- ``pydantic``: pydantic v2 models of the same shapes (``model_validate_json``), same rules
  (``decode_pydantic_natterly.py``, ``decode_pydantic_chatshipper.py``).

All three build the same msgspec ``Envelope`` and domain-event Structs, and the run aborts
unless their outputs are equal for every body, so they provably do the same work. Work that
is not decoding uses the same code in all three: the token cut (``contracts.member_cut``: a
trailing plain-string token is cut by text and each pipeline's own decode of the rest proves
the cut right; any other layout falls back to ``strip_member``), SHA-256 of the stored body,
and the domain-event constructors. A Natterly body of an unknown event is decoded once by
each pipeline's projector step (none of them maps it to events).

Rounds alternate between pipelines; the best round of each counts.

    .venv/bin/python bench/decode.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pydantic
from decode_common import RECEIVED_AT, SOURCE, WS, Result
from decode_json_chatshipper import d_events_chatshipper, d_receive_chatshipper
from decode_json_natterly import d_events_natterly, d_receive_natterly
from decode_pydantic_chatshipper import CIngest, CWebhook, p_events_chatshipper, p_receive_chatshipper
from decode_pydantic_natterly import PNIngest, p_decode_natterly, p_events_natterly, p_receive_natterly

from contracts import ingest
from contracts.chatshipper import decode_chatshipper
from contracts.ingest import parse_webhook
from contracts.natterly import NatterlyWebhook
from contracts.normalise import normalise

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "webhooks"


# --- msgspec (the contracts) -------------------------------------------------------------


def run_msgspec(provider: str, body: bytes) -> Result:
    env = parse_webhook(provider, SOURCE, body, received_at=RECEIVED_AT)
    return env, normalise(env)


def run_json(provider: str, body: bytes) -> Result:
    body = body.strip(WS)
    if provider == "natterly":
        env = d_receive_natterly(body)
        return env, d_events_natterly(env)
    env = d_receive_chatshipper(body)
    return env, d_events_chatshipper(env)


def run_pydantic(provider: str, body: bytes) -> Result:
    body = body.strip(WS)
    if provider == "natterly":
        env = p_receive_natterly(body)
        return env, p_events_natterly(env)
    env = p_receive_chatshipper(body)
    return env, p_events_chatshipper(env)


# --- the run ---------------------------------------------------------------------------------

PIPELINES: dict[str, Callable[[str, bytes], Result]] = {
    "msgspec": run_msgspec,
    "json": run_json,
    "pydantic": run_pydantic,
}


# The normaliser's Natterly decoder: the tagged union of the documented events.
N_DOCUMENTED = msgspec.json.Decoder(NatterlyWebhook)


def decode_msgspec(provider: str, body: bytes) -> object:
    """Only the decoding the msgspec pipeline does: its ingest Struct, then the full Struct."""
    if provider == "natterly":
        try:
            documented: object = N_DOCUMENTED.decode(body)
        except msgspec.ValidationError:
            documented = None  # an unknown event name: no events (as the normaliser does)
        return ingest._N_WEBHOOK.decode(body), documented  # the receiver's private decoder
    return ingest._C_WEBHOOK.decode(body), decode_chatshipper(body)


def decode_json(provider: str, body: bytes) -> object:
    """Only the decoding the json pipeline does: json.loads in the receiver and in the projector."""
    return json.loads(body), json.loads(body)


def decode_pydantic(provider: str, body: bytes) -> object:
    """Only the decoding the pydantic pipeline does: its ingest model, then the full model."""
    if provider == "natterly":
        return PNIngest.model_validate_json(body), p_decode_natterly(body)
    return CIngest.model_validate_json(body), CWebhook.model_validate_json(body)


DECODERS: dict[str, Callable[[str, bytes], object]] = {
    "msgspec": decode_msgspec,
    "json": decode_json,
    "pydantic": decode_pydantic,
}


def load_goldens() -> list[tuple[str, str, bytes]]:
    return [
        (provider, path.name, path.read_bytes())
        for provider in ("natterly", "chatshipper")
        for path in sorted((FIXTURES / provider).glob("*.json"))
    ]


def verify(goldens: list[tuple[str, str, bytes]]) -> int:
    """Abort unless every pipeline produces identical envelopes and events; count events."""
    total = 0
    for provider, name, body in goldens:
        expected = run_msgspec(provider, body)
        for label, pipeline in PIPELINES.items():
            got = pipeline(provider, body)
            if got != expected:
                sys.exit(f"{label} differs from msgspec on {provider}/{name}:\n{got}\n{expected}")
        total += len(expected[1])
    return total


def time_pass(pipeline: Callable[[str, bytes], object], bodies: list[tuple[str, str, bytes]]) -> float:
    start = time.perf_counter()
    for provider, _, body in bodies:
        pipeline(provider, body)
    return time.perf_counter() - start


def measure(
    bodies: list[tuple[str, str, bytes]],
    seconds: float,
    pipelines: dict[str, Callable[[str, bytes], object]] = PIPELINES,  # type: ignore[assignment]
) -> dict[str, float]:
    """Best pass time per pipeline, rounds alternating between pipelines."""
    best = dict.fromkeys(pipelines, float("inf"))
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        for label, pipeline in pipelines.items():
            best[label] = min(best[label], time_pass(pipeline, bodies))
        rounds += 1
    return best


def report(title: str, bodies: list[tuple[str, str, bytes]], events: int, best: dict[str, float]) -> None:
    size = sum(len(body) for _, _, body in bodies)
    print(f"\n{title}: {len(bodies)} bodies, {size / 1024:.0f} KiB, {events} domain events per pass")
    print(f"  {'pipeline':<9} {'webhooks/s':>11} {'domain ev/s':>12} {'us/webhook':>11} {'msgspec is':>11}")
    for label, seconds in best.items():
        ratio = seconds / best["msgspec"]
        print(
            f"  {label:<9} {len(bodies) / seconds:>11,.0f} {events / seconds:>12,.0f} "
            f"{seconds / len(bodies) * 1e6:>11.1f} {ratio:>10.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="total timing budget (default 20)")
    args = parser.parse_args()
    goldens = load_goldens()
    large = [g for g in goldens if len(g[2]) > 64 * 1024]
    typical = [g for g in goldens if len(g[2]) <= 64 * 1024]
    print(f"Python {sys.version.split()[0]}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}")
    budget = args.seconds / 6
    sets = (
        ("all goldens", goldens),
        ("typical bodies (<= 64 KiB)", typical),
        ("large bodies (~100 kB)", large),
    )
    for title, bodies in sets:
        events = verify(bodies)
        report(f"End to end, {title}", bodies, events, measure(bodies, budget))
    for title, bodies in sets:
        events = verify(bodies)
        report(f"Decoding only (the pipelines' own decode calls), {title}", bodies, events,
               measure(bodies, budget, DECODERS))  # fmt: skip
    print("\nVerified before timing: all three pipelines produced identical envelopes and events.")


if __name__ == "__main__":
    main()
