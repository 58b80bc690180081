"""Pure parts of the consumer runtime: offset progress, parked-key state, retry policy,
error classification, consumer definitions and configuration lookup."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from consumers.api import ConsumedEvent, Consumer, consumer
from consumers.errors import ConsumerError, PermanentError, RetriableError, is_retriable
from consumers.groups import parse_reset_target
from consumers.parking import ParkedState, dead_entry, parked_entry
from consumers.registry import consumer_config
from consumers.retry import RetryPolicy
from consumers.tracking import BatchProgress
from contracts.dead_letter import DeadLetterEntry, Resolution, decode, encode
from contracts.errors import ContractError
from contracts.position import Position
from parley.settings import Settings

TP = TopicPartition("t", 0)


def _rec(offset: int) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic="t", partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=b"k", value=b"v", checksum=None, serialized_key_size=1,
                          serialized_value_size=1, headers=())


def test_progress_commits_only_the_contiguous_done_prefix_across_offset_gaps() -> None:
    records = [_rec(o) for o in (10, 11, 13, 17)]  # gaps: transaction markers
    events = [ConsumedEvent(r) for r in records]
    lane_a, lane_b = [events[0], events[2]], [events[1], events[3]]  # two keys
    progress = BatchProgress({TP: records}, [lane_a, lane_b])
    assert progress.committable() == {}
    progress.lane_done[1] = 1  # 11 done
    assert progress.committable() == {}  # 10 is not done: nothing may be committed
    progress.lane_done[0] = 1  # 10 done
    assert progress.committable() == {TP: 12}
    progress.lane_done[1] = 2  # 17 done, 13 still open
    assert progress.committable() == {TP: 12}
    progress.lane_done[0] = 2
    assert progress.complete() and progress.committable() == {TP: 18}


def _entry(off: int, key: str = "k", kind: Literal["dead", "parked"] = "parked"
           ) -> DeadLetterEntry:
    return DeadLetterEntry(dlq_offset=off, kind=kind, group="g", origin=Position("t", 0, off),
                           key=key)


def test_parked_state_is_idempotent_and_resolutions_cover_earlier_entries() -> None:
    s = ParkedState()
    s.add(_entry(0, kind="dead"))
    s.add(_entry(1))
    s.add(_entry(1))  # the writer's copy, then the follower's: once
    s.add(_entry(2, key="other"))
    assert s.is_parked("t", "k") and len(s.entries(("t", "k"))) == 2
    s.resolve(("t", "k"), 0)
    assert s.is_parked("t", "k")  # entry 1 is not covered
    s.resolve(("t", "k"), 1)
    assert not s.is_parked("t", "k") and s.keys() == [("t", "other")]
    s.add(_entry(1))  # applied late (after its resolution): stays resolved
    assert not s.is_parked("t", "k")
    s.add(_entry(5))  # a later entry parks the key again
    assert s.is_parked("t", "k")


def test_dlq_entries_round_trip_and_scrub_secrets() -> None:
    exc = RuntimeError("token s3cr3t rejected")
    ev = ConsumedEvent.of(topic="t", partition=1, offset=7, key="chat-1", value=b"{}")
    first, last = datetime(2026, 1, 5, 9, tzinfo=UTC), datetime(2026, 1, 5, 9, 1, tzinfo=UTC)
    written = dead_entry("g", ev, exc, attempts=3, retriable=True, first_failed_at=first, at=last,
                         secrets=["s3cr3t"])
    entry = decode(4, b"chat-1", encode(written), b"value", keep_value=True)
    assert isinstance(entry, DeadLetterEntry)
    assert (entry.kind, entry.group, entry.key, entry.origin, entry.attempts, entry.reason) == (
        "dead", "g", "chat-1", Position("t", 1, 7), 3, "handle")
    assert entry.error == "token *** rejected" and entry.error_type == "RuntimeError"
    assert "s3cr3t" not in repr(encode(written))
    assert (entry.retriable, entry.first_failed_at, entry.at) == (True, first, last)
    assert entry.value == b"value" and entry.dlq_offset == 4
    parked = decode(5, b"chat-1", encode(parked_entry("g", ev, last)), b"v")
    assert isinstance(parked, DeadLetterEntry) and parked.value is None and parked.kind == "parked"
    resolved = decode(6, b"chat-1", encode(Resolution(group="g", topic="t", key="chat-1",
                                                      action="skip", upto=5)), b"")
    assert isinstance(resolved, Resolution)
    assert (resolved.topic, resolved.key, resolved.action, resolved.upto) == ("t", "chat-1", "skip", 5)
    assert decode(7, b"x", [("something", b"else")], b"") is None


@pytest.mark.parametrize("secret", ['tok"quote"-0123456789', "tok\\back\\slash-0123456789"])
def test_dead_letter_errors_mask_every_spelling_of_a_secret(secret: str) -> None:
    """The error text is masked like a log line (:mod:`parley.secrets`): a secret holding
    ``"`` or ``\\`` reaches an exception's text escaped (JSON, ``repr()``), and a plain
    replacement of the secret as written missed those spellings."""
    exc = RuntimeError(f"the CRM said {orjson.dumps({'token': secret}).decode()}, "
                       f"the call was post(token={secret!r})")
    ev = ConsumedEvent.of(topic="t", partition=1, offset=7, key="chat-1", value=b"{}")
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    error = dead_entry("g", ev, exc, attempts=1, retriable=False, first_failed_at=at, at=at,
                       secrets=[secret]).error
    assert error == 'the CRM said {"token":"***"}, the call was post(token=\'***\')'


def test_retry_delays_are_jittered_bounded_and_honour_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=3.0)
    rng = random.Random(7)
    for attempt in range(1, 10):
        cap = min(3.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.delay_s(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and len(set(delays)) > 100
    assert policy.delay_s(1, rng, at_least_s=2.0) == 2.0  # Retry-After wins over jitter
    assert policy.delay_s(1, rng, at_least_s=60.0) == 3.0  # but never beyond the bound
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_errors_are_classified_by_their_retriable_attribute() -> None:
    assert is_retriable(RetriableError("x")) and not is_retriable(PermanentError("x"))
    assert not is_retriable(ContractError("bad envelope"))
    assert is_retriable(TimeoutError()) and is_retriable(ConnectionResetError())
    assert not is_retriable(KeyError("bug")) and not is_retriable(TypeError("bug"))


def test_consumer_definitions_are_checked_and_filters_apply() -> None:
    async def h(ev: ConsumedEvent) -> None:
        return None

    with pytest.raises(ValueError, match="exactly one"):
        Consumer(name="x")
    with pytest.raises(ValueError, match="name"):
        Consumer(name="has space", handle=h)
    with pytest.raises(ValueError, match="projector's"):  # its dead letters, `parley dlq projector`
        Consumer(name="projector", handle=h)
    with pytest.raises(ValueError, match="topics"):
        Consumer(name="x", handle=h, topics=("chats",))  # type: ignore[arg-type]
    c = consumer("c", topics=("chat",), event_types=("ChatClosed",))(h)
    assert c.handle is h and c.filtered and c.event_types == frozenset({"ChatClosed"})
    batch = consumer("b", batch=True)(h)
    assert batch.handle_batch is h and batch.handle is None and not batch.filtered


def test_reset_targets() -> None:
    assert parse_reset_target("earliest") == "earliest"
    assert parse_reset_target("2026-01-05T09:00:00Z") == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert parse_reset_target("2026-01-05T09:00") == datetime(2026, 1, 5, 9, tzinfo=UTC)
    with pytest.raises(ConsumerError, match="ISO-8601"):
        parse_reset_target("yesterday")


def test_consumer_config_from_the_side_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert consumer_config(Settings(), "crm") == {}
    side = tmp_path / "consumers.toml"
    side.write_text('[consumers.crm]\nbase_url = "http://crm"\n')
    monkeypatch.setenv("PARLEY_CONSUMERS_CONFIG", str(side))
    assert consumer_config(Settings(), "crm") == {"base_url": "http://crm"}
    assert consumer_config(Settings(), "search") == {}


def test_parley_run_redacts_secrets_that_only_the_side_file_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``parley run`` builds its consumers after logging is set up; their secrets (here from
    ``$PARLEY_CONSUMERS_CONFIG``, which the settings never see) must be redacted too."""
    from consumers.role import BuiltinConsumersRole
    from parley.logs import log_secrets
    from parley.runtime import Runtime

    token = "side-file-crm-token-5f2a"
    signing = "whsec_" + base64.b64encode(b"side-file-signing-secret-9c1e").decode()
    side = tmp_path / "consumers.toml"
    side.write_text(f'[consumers.crm]\nbase_url = "http://127.0.0.1:9"\nauth_value = "{token}"\n'
                    f'signing_secret = "{signing}"\n')
    monkeypatch.setenv("PARLEY_CONSUMERS_CONFIG", str(side))
    settings = Settings(data_dir=str(tmp_path))
    assert token not in settings.all_secrets() and signing not in settings.all_secrets()
    secrets = log_secrets(settings, [BuiltinConsumersRole(Runtime.from_settings(settings))])
    assert token in secrets and signing in secrets


def test_parley_runs_builtin_consumers_with_their_configured_batch_sizes_and_stuck_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[consumers.NAME] max_records`` and ``stuck_after_s`` apply under ``parley run`` as
    under ``parley consumer NAME`` (they were read only by the latter), and the CRM's own default is its
    configuration's ``max_records`` (500), not the runtime's."""
    from consumers.role import BuiltinConsumersRole, ConsumerRole
    from consumers.search.consumer import MAX_RECORDS as SEARCH_BATCH
    from parley.runtime import Runtime

    side = tmp_path / "consumers.toml"
    side.write_text('[consumers.search]\nmax_records = 3\nstuck_after_s = 60\n'
                    '[consumers.crm]\nbase_url = "http://127.0.0.1:9"\n')
    monkeypatch.setenv("PARLEY_CONSUMERS_CONFIG", str(side))

    def rt() -> Runtime:  # one per role: each registers its metrics
        return Runtime.from_settings(Settings(data_dir=str(tmp_path)))

    service = BuiltinConsumersRole(rt()).service
    runners = service.runners
    assert (runners["search"].max_records, runners["crm"].max_records) == (3, 500)
    # stuck_after_s likewise, per group (the monitor's own 300 s for the CRM here).
    assert {g.consumer: g.stuck_after_s for g in service.monitor.groups} == {
        "search": 60.0, "crm": None}
    assert ConsumerRole(rt(), "search").service.runners["search"].max_records == 3
    side.write_text('[consumers.crm]\nbase_url = "http://127.0.0.1:9"\n')
    assert BuiltinConsumersRole(rt()).service.runners["search"].max_records == SEARCH_BATCH
