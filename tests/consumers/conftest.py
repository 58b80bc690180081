"""Fixtures of the consumers' tests (their helpers are in tests/kit/)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _drop_dead_letter_topics(dead_letter_topics_dropped: None) -> None:
    """Every test here may run consumers: its ``<prefix>.dlq.*`` topics go when it ends."""
