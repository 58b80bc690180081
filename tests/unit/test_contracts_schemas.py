"""docs/schemas/ must match what the Structs generate."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.schemas import SCHEMA_TYPES, generate, main

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
REGENERATE = "regenerate with: python -m contracts.schemas --write docs/schemas"


def test_docs_schemas_are_fresh() -> None:
    expected = generate()
    on_disk = {str(path.relative_to(SCHEMAS)): path.read_bytes() for path in SCHEMAS.rglob("*.schema.json")}
    missing = sorted(set(expected) - set(on_disk))
    stale = sorted(name for name in expected if name in on_disk and on_disk[name] != expected[name])
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
