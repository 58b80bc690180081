"""JSON Schemas generated from the Structs: every inbound body, the envelope,
the domain events and the state shapes.

    python -m contracts.schemas --write docs/schemas

This is the one module in ``contracts`` that touches the filesystem, and only
when run as that command; importing it (``generate()``) does no I/O, which is
how the test that keeps ``docs/schemas/`` fresh compares without writing.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from contracts import chatshipper, domain, envelope, natterly, standard, state

__all__ = ["SCHEMA_TYPES", "clean_descriptions", "generate", "main", "render"]

#: Relative file name → the type its schema describes.
SCHEMA_TYPES: Mapping[str, object] = {
    "envelope.schema.json": envelope.Envelope,
    "domain-event.schema.json": domain.DomainEvent,
    "natterly/envelope.schema.json": natterly.NatterlyEnvelope,
    "natterly/webhook.schema.json": natterly.NatterlyWebhook,
    **{
        f"natterly/{name}.schema.json": getattr(natterly, f"{name}Webhook")
        for name in natterly.NATTERLY_EVENTS
    },
    "chatshipper/webhook.schema.json": chatshipper.ChatShipperWebhook,
    "standard/webhook.schema.json": standard.StandardWebhook,
    "state/chat.schema.json": state.ChatState,
    "state/message.schema.json": state.MessageState,
    "state/visitor.schema.json": state.VisitorState,
    "state/agent.schema.json": state.AgentState,
}


def _any_json(type_: type) -> dict[str, object]:
    # Free-form members (``meta``, ``visitor_custom_data``) are typed ``object``
    # rather than ``Any``; in a schema that is "any JSON value".
    if type_ is object:
        return {"description": "Any JSON value."}
    raise NotImplementedError(f"no JSON schema for {type_!r}")


def clean_descriptions(node: object) -> object:
    """``node`` (generated JSON Schema) with every ``description`` dedented by ``inspect.cleandoc``.

    Docstrings become descriptions, and msgspec releases differ in how they dedent them
    (0.23 applies inspect.cleandoc, earlier ones kept the indentation): cleaned, the output
    is the same whichever msgspec generated it.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str)
            else clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [clean_descriptions(item) for item in node]
    return node


def render(type_: object) -> bytes:
    """The schema of ``type_`` as stable, indented JSON text (keys sorted, docstrings dedented)."""
    schema = clean_descriptions(msgspec.json.schema(type_, schema_hook=_any_json))
    assert isinstance(schema, dict)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2) + b"\n"


def generate() -> dict[str, bytes]:
    """Every schema file, by relative path, rendered in memory."""
    return {name: render(type_) for name, type_ in SCHEMA_TYPES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema files under ``--write DIR``; report files no longer generated."""
    parser = argparse.ArgumentParser(prog="python -m contracts.schemas", description=__doc__)
    parser.add_argument("--write", metavar="DIR", required=True, type=Path)
    args = parser.parse_args(argv)
    root: Path = args.write
    files = generate()
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            print(f"wrote {path}")
    stale = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.schema.json")
        if str(path.relative_to(root)) not in files
    )
    for name in stale:
        print(f"stale (no longer generated; delete it): {root / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
