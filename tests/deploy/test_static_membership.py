"""Static group membership: a member that restarts with its ``group_instance_id`` (the pod
name in Kubernetes) gets its partitions back and the other members are not rebalanced."""

from __future__ import annotations

import asyncio
import gc
import time

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from contracts.topics import Topics
from parley.kafka.clients import make_consumer, static_membership
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


class Counting(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.revoked = 0
        self.assigned: list[set[TopicPartition]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revoked += 1

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append(set(assigned))


class Member:
    """One group member polling in the background, like a role's runner."""

    def __init__(self, k: KafkaSettings, topic: str, group: str, instance: str | None) -> None:
        k = msgspec.structs.replace(k, group_instance_id=instance)
        self.consumer: AIOKafkaConsumer = make_consumer(k, group_id=group)
        self.listener = Counting()
        self.consumer.subscribe([topic], listener=self.listener)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()

        async def poll() -> None:
            while True:
                await self.consumer.getmany(timeout_ms=100)

        self.task = asyncio.create_task(poll())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def _until(cond: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)  # poll interval


def test_static_membership_arguments() -> None:
    assert static_membership(KafkaSettings(bootstrap="b:9092"), "g") == {}
    k = KafkaSettings(bootstrap="b:9092", group_instance_id="pod-0", static_session_timeout_ms=45_000)
    assert static_membership(k, "g") == {"group_instance_id": "pod-0", "session_timeout_ms": 45_000}
    assert static_membership(k, None) == {}  # assign()-only clients never join a group


# aiokafka (0.14) can leave behind a broker socket it opened while a member of a rebalancing
# group was stopping; the garbage collector finds it later and Python reports it as an
# unraisable ResourceWarning, which this suite turns into an error in whichever test is
# running. Seen only here (twice in full runs, never in isolation): the test collects garbage
# itself at its end, so such a socket is reported here, where it is tolerated, and nowhere else.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
async def test_restart_of_a_member_rebalances_only_without_static_ids(
        kafka_settings: KafkaSettings, topics: Topics, unique: str, static: bool) -> None:
    group = f"{unique}.static" if static else f"{unique}.dynamic"
    k = msgspec.structs.replace(kafka_settings, static_session_timeout_ms=30_000)
    leader = Member(k, topics.chat, group, "pod-0" if static else None)
    await leader.start()
    await _until(lambda: leader.listener.assigned and len(leader.listener.assigned[-1]) == 3,
                 "first member got no partitions")
    follower = Member(k, topics.chat, group, "pod-1" if static else None)
    await follower.start()
    try:
        await _until(lambda: follower.listener.assigned and follower.listener.assigned[-1]
                     and len(leader.listener.assigned[-1]) < 3, "second member got no partitions")
        before = follower.listener.assigned[-1]
        revoked_before = leader.listener.revoked
        await follower.stop()  # a pod restart: the process goes away …
        follower = Member(k, topics.chat, group, "pod-1" if static else None)
        await follower.start()  # … and comes back under the same name
        await _until(lambda: follower.listener.assigned and follower.listener.assigned[-1],
                     "restarted member got no partitions")
        if static:
            assert follower.listener.assigned[-1] == before  # its own partitions back
            # The other member was not disturbed: no revocation, no new assignment.
            await asyncio.sleep(0)  # let any pending listener callback run
            assert leader.listener.revoked == revoked_before
        else:
            # Control: without static ids the group rebalanced around the restart.
            assert leader.listener.revoked > revoked_before
    finally:
        await follower.stop()
        await leader.stop()
        gc.collect()  # see above: report any socket aiokafka left behind while under the filter
