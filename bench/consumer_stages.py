"""Where a consumer's CPU goes, by stage, from a py-spy profile of ``bench/consumers.py``.

    .venv/bin/py-spy record -r 250 --nonblocking --format raw -o empty.txt -- \\
        .venv/bin/python bench/consumers.py --modes empty --events 300000 --runs 3
    .venv/bin/python bench/consumer_stages.py empty.txt [--cpu-us 4.1]

py-spy's raw format is one collapsed stack per line with its sample count (idle samples left
out). Each stack is put in one stage by its innermost frame that belongs to a known file (the
event loop's own frames count for the first such frame above them): aiokafka's fetching and
record decoding, its commits, envelope decoding (``contracts/``), the runtime's lanes and
ordering (``consumers/``), the handler (the bench's), metrics (``prometheus_client``), and
the event loop itself. Samples of the bench's set-up (producing the records, creating and
deleting topics) are left out. With ``--cpu-us`` (the bench's median CPU per event) the shares
are also printed as microseconds per event.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# A stack with a commit frame anywhere is the commit's (its socket writes included).
COMMIT = re.compile(r"^(AIOKafkaConsumer\.commit|GroupCoordinator\.(_do_)?commit_offsets) |"
                    r"consumers/committer\.py|^ConsumerRunner\._commit")
# (stage, pattern on one frame "function (file:line)"); the first match from the leaf wins.
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("aiokafka fetch/decode", re.compile(r"aiokafka/")),
    ("envelope decode", re.compile(r"contracts/")),
    ("handler", re.compile(r"^through_runtime\.<locals>\.(handle|count|handle_batch) ")),
    ("metrics", re.compile(r"prometheus_client/")),
    ("lanes/ordering", re.compile(r"consumers/|parley/")),
)
SETUP = re.compile(r"^(envelopes|produce|apply_topics|delete_topics|publish_states|folded) "
                   r"|aiokafka/producer/|shutil|importlib|ssl\.py")
LOOP = "event loop (asyncio, selectors)"


def stage_of(frames: list[str]) -> str | None:
    if any(SETUP.search(f) for f in frames):
        return None
    if any(COMMIT.search(f) for f in frames):
        return "commit"
    for frame in reversed(frames):  # leaf first
        for stage, pattern in STAGES:
            if pattern.search(frame):
                return stage
    return LOOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--cpu-us", type=float, default=None,
                        help="CPU microseconds per event to share out")
    args = parser.parse_args()
    samples: Counter[str] = Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stage = stage_of([f for f in stack.split(";") if not f.startswith("process ")])
        if stage is not None:
            samples[stage] += int(count)
    total = sum(samples.values())
    for stage, n in samples.most_common():
        us = f"{args.cpu_us * n / total:6.2f} us/event" if args.cpu_us else ""
        print(f"{stage:<32} {n / total:6.1%} {us}")
    print(f"{'(samples)':<32} {total}")


if __name__ == "__main__":
    main()
