"""contracts is data only: no I/O imports, small modules, narrow public surface."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import msgspec

from contracts import domain

PACKAGE = Path(__file__).resolve().parents[2] / "contracts"


def package_init() -> ModuleType:
    """contracts/__init__.py, loaded from its file.

    (An editable install made before the file existed maps ``contracts`` to a
    namespace package, which skips ``__init__``; loading it directly keeps this
    test about the file, not about how the environment was installed.)
    """
    spec = importlib.util.spec_from_file_location("contracts_init_under_test", PACKAGE / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IO_MODULES = {
    "aiohttp",
    "aiokafka",
    "asyncio",
    "socket",
    "ssl",
    "http",
    "urllib.request",
    "requests",
    "subprocess",
    "os",
    "io",
    "shutil",
    "tempfile",
    "pathlib",
    "logging",
    "threading",
    "sqlite3",
}
# The schema writer is the one sanctioned exception, behind `python -m contracts.schemas`.
ALLOWED = {"schemas.py": {"pathlib"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_io_imports() -> None:
    for path in PACKAGE.glob("*.py"):
        bad = {
            name for name in imports(path) if name in IO_MODULES or name.split(".")[0] in IO_MODULES
        } - ALLOWED.get(path.name, set())
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_modules_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_public_surface() -> None:
    contracts = package_init()
    assert set(contracts.__all__) == {
        "PROVIDERS",
        "ContractError",
        "DomainEvent",
        "Envelope",
        "EventTopicKind",
        "Position",
        "TopicSpec",
        "Topics",
        "decode_envelope",
        "encode_envelope",
        "natterly_auth_token",
        "normalise",
        "parse_webhook",
    }
    for name in contracts.__all__:
        assert getattr(contracts, name) is not None


def test_every_struct_is_frozen_and_domain_events_keyword_only() -> None:
    for name in domain.__all__:
        value = getattr(domain, name)
        if isinstance(value, type) and issubclass(value, msgspec.Struct):
            assert value.__struct_config__.frozen, name
            parameters = inspect.signature(value).parameters.values()
            assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters), name


def test_domain_event_kinds() -> None:
    kinds = {cls.__struct_config__.tag for cls in domain.DomainEvent.__args__}  # type: ignore[attr-defined]
    assert kinds >= {
        "ChatStarted",
        "ChatAccepted",
        "ChatAssigned",
        "ChatUpdated",
        "MessagePosted",
        "MessageEdited",
        "MessageDeleted",
        "ChatIdle",
        "ChatIgnored",
        "ChatClosed",
        "ChatCompleted",
        "ChatRated",
        "TranscriptSent",
        "VisitorSeen",
        "AgentStatusChanged",
    }
    event = domain.ChatIdle(
        event_id="e",
        occurred_at=__import__("datetime").datetime(2024, 1, 1),
        provider="p",
        source="s",
        chat_id="c",
    )
    assert msgspec.json.encode(event).startswith(b'{"kind":"ChatIdle"')
