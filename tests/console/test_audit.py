"""Console actions' ids and actors (parley/console/audit.py): what an id may be, and that an
actor is a label of a token, never the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parley.console.audit import MAX_ACTION_AGE, ActionRefused, actor_of, issued_at, new_action_id

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_an_action_id_carries_its_issue_time_and_is_refused_when_stale_or_malformed() -> None:
    fresh = new_action_id(NOW)
    assert issued_at(fresh, NOW) == NOW
    assert new_action_id(NOW) != fresh  # random part
    assert issued_at(new_action_id(NOW - MAX_ACTION_AGE + timedelta(seconds=1)), NOW)
    for bad in (new_action_id(NOW - MAX_ACTION_AGE - timedelta(seconds=1)),  # stale
                new_action_id(NOW + timedelta(hours=1)),  # from the future
                "", "x" * 30, fresh.upper(), fresh + "0", "1" * 13 + "-" + "g" * 16):
        with pytest.raises(ActionRefused):
            issued_at(bad, NOW)


def test_an_actor_is_a_short_label_of_the_token_never_the_token() -> None:
    token = b"console-api-token-3f9a1c7e5b2d8046"
    label = actor_of(token)
    assert label.startswith("token sha256:") and len(label) == len("token sha256:") + 8
    assert token.decode() not in label and label == actor_of(token)
    assert actor_of(b"another-token-0123456789abcdef") != label
    assert actor_of(None) == "open console"
