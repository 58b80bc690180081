"""docs/schemas/ must match what the Structs generate."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.schemas import SCHEMA_TYPES, generate, main

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
REGENERATE = "regenerate with: python -m contracts.schemas --write docs/schemas"


def structure(content: bytes) -> object:
    """What a schema says, without its formatting: parsed JSON, each description's words only.

    A library release that re-indents or re-wraps docstrings changes no structure or
    constraint, so it must not make the committed schemas "stale" (it once failed CI).
    """

    def walk(node: object) -> object:
        if isinstance(node, dict):
            return {
                key: " ".join(value.split()) if key == "description" and isinstance(value, str)
                else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(json.loads(content))


def test_docs_schemas_are_fresh() -> None:
    expected = generate()
    on_disk = {str(path.relative_to(SCHEMAS)): path.read_bytes() for path in SCHEMAS.rglob("*.schema.json")}
    missing = sorted(set(expected) - set(on_disk))
    stale = sorted(
        name for name in expected if name in on_disk and structure(on_disk[name]) != structure(expected[name])
    )
    extra = sorted(set(on_disk) - set(expected))
    assert not (missing or stale or extra), f"missing={missing} stale={stale} extra={extra}; {REGENERATE}"


def test_every_inbound_body_and_the_envelope_have_a_schema() -> None:
    names = set(SCHEMA_TYPES)
    assert {
        "envelope.schema.json",
        "chatshipper/webhook.schema.json",
        "natterly/envelope.schema.json",
    } <= names
    assert len([name for name in names if name.startswith("natterly/Chat")]) == 9
    assert {"natterly/VisitorCreated.schema.json", "natterly/UserStatusChanged.schema.json"} <= names


def test_schemas_are_json_schema_documents() -> None:
    for name, content in generate().items():
        schema = json.loads(content)
        assert schema["$schema"].startswith("https://json-schema.org/"), name
        assert "$defs" in schema or "anyOf" in schema or "$ref" in schema, name


def test_schemas_do_not_forbid_unknown_keys() -> None:
    for name, content in generate().items():
        assert b'"additionalProperties": false' not in content, name


def test_natterly_webhook_schema_is_tagged_by_event() -> None:
    schema = json.loads(generate()["natterly/webhook.schema.json"])
    assert schema["discriminator"]["propertyName"] == "event"
    assert len(schema["discriminator"]["mapping"]) == 12


def test_main_writes_the_files(tmp_path: Path, capsys: object) -> None:
    assert main(["--write", str(tmp_path)]) == 0
    (tmp_path / "old.schema.json").write_text("{}")
    assert main(["--write", str(tmp_path)]) == 0
    written = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.schema.json")}
    assert written == set(SCHEMA_TYPES) | {"old.schema.json"}
    for name, content in generate().items():
        assert (tmp_path / name).read_bytes() == content
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "stale" in err and "old.schema.json" in err


def test_freshness_ignores_docstring_layout_but_not_structure() -> None:
    name, content = next(iter(generate().items()))
    schema = json.loads(content)
    words = "One schema,\n    described on two lines."
    reindented = {**schema, "description": "  " + words.replace("\n    ", "\n") + "\n  "}
    original = {**schema, "description": words}
    assert structure(json.dumps(reindented).encode()) == structure(json.dumps(original).encode())
    loosened = {**schema, "$defs": {**schema.get("$defs", {}), "Extra": {"type": "string"}}}
    assert structure(json.dumps(loosened).encode()) != structure(content), name
