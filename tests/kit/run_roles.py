"""The roles of ``parley run`` with the short waits a test wants (one real Parley in-process)."""

from __future__ import annotations

from consumers.role import BuiltinConsumersRole
from parley.run import RUN_ROLES
from parley.runtime import Role, Runtime
from projector.api import ApiOptions
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from receiver.role import ReceiverRole

__all__ = ["quick_run_roles"]


def quick_run_roles(rt: Runtime, group: str, *, wait_s: float, recheck_s: float) -> list[Role]:
    """:data:`parley.run.RUN_ROLES`, built as ``parley run`` builds them but with the projector
    in group ``<group>-projector``, polling Kafka every 100 ms, and ``min_position`` waits of
    at most ``wait_s`` re-checked every ``recheck_s``."""
    roles: list[Role] = [
        ReceiverRole(rt),
        ProjectorRole(rt, ProjectorRoleOptions(
            runner=ProjectorRunnerOptions(group_id=f"{group}-projector", poll_timeout_ms=100),
            api=ApiOptions(min_position_timeout_s=wait_s, recheck_s=recheck_s))),
        BuiltinConsumersRole(rt)]
    assert [type(r) for r in roles] == list(RUN_ROLES), "parley run's roles changed"
    return roles
