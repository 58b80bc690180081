"""Which roles each process command runs. Role packages are imported lazily."""

from __future__ import annotations

import importlib

from parley.runtime import Role, Runtime

# command -> role factories as "module:attribute"; each attribute is called with the Runtime.
ROLES: dict[str, tuple[str, ...]] = {
    "run": ("receiver.role:ReceiverRole", "projector.role:ProjectorRole",
            "consumers.role:BuiltinConsumersRole"),
    "receiver": ("receiver.role:ReceiverRole",),
    "projector": ("projector.role:ProjectorRole",),
}


def roles_for(command: str, rt: Runtime) -> list[Role]:
    roles: list[Role] = []
    for ref in ROLES.get(command, ()):
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A role package not built yet (early issues) is skipped, not an error.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        roles.append(getattr(module, attr)(rt))
    return roles
