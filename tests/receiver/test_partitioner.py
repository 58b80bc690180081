"""The receiver's partitioner puts every key where Kafka's default partitioner would."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from receiver.partitioner import KeyPartitioner, murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (the Java client's own vectors).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_MURMUR2.items())
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_matches_java_formula_and_aiokafka_for_random_keys() -> None:
    rng = random.Random(20261121)
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for n in range(5000):
        # Every tail length, bytes >= 0x80 (Java's signed bytes), empty keys, chat ids.
        key = (rng.randbytes(rng.randrange(0, 70)) if n % 3
               else f"{rng.getrandbits(128):032x}-chat-{n}".encode())
        count = rng.choice((1, 2, 3, 6, 7, 12, 50, 64))
        partitions = list(range(count))
        java = (aiokafka_murmur2(key) & 0x7FFFFFFF) % count  # Utils.toPositive(murmur2) % n
        assert ours(key, partitions, partitions) == java == theirs(key, partitions, partitions)
        assert partition_for(key, count) == java
        assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_repeated_keys_and_changed_partition_counts_are_answered_afresh() -> None:
    p = KeyPartitioner()
    key = b"287146e8-68fd-43c5-b79a-911058bc1c9c"
    by_count = {n: p(key, list(range(n)), list(range(n))) for n in (3, 6, 12)}
    for n, partition in by_count.items():  # cached answers are per partition count
        assert p(key, list(range(n)), []) == partition == (murmur2(key) & 0x7FFFFFFF) % n


def test_partition_ids_come_from_the_sorted_list_and_keyless_records_go_to_available_ones(
        ) -> None:
    p = KeyPartitioner()
    key = b"chat-42"
    assert p(key, [10, 11, 12], []) == [10, 11, 12][(murmur2(key) & 0x7FFFFFFF) % 3]
    assert {p(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert p(None, [0, 1, 2], []) in (0, 1, 2)
