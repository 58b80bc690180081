"""Loading and validating deploy/ manifests offline: Kubernetes kinds against the schemas
PyPI's ``kubernetes-validate`` carries, custom resources against deploy/crds/."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
CRDS = DEPLOY / "crds"
# The oldest Kubernetes the manifests promise to work on, and the newest the installed
# kubernetes-validate knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what containers must listen on
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Obj:
    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.file}:{self.kind}/{self.name}"


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def generated_matches(path: Path, rendered: str) -> bool:
    """A generated YAML file says what the generator renders now: the same documents, and the
    same comment lines (the GENERATED header). PyYAML's line wrapping and quoting are not
    compared, so a formatting change in a new PyYAML release cannot fail the suite."""
    on_disk = path.read_text(encoding="utf-8")

    def comments(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.lstrip().startswith("#")]

    return (list(yaml.safe_load_all(on_disk)) == list(yaml.safe_load_all(rendered))
            and comments(on_disk) == comments(rendered))


def k8s_objects(*, include_examples: bool = True) -> list[Obj]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        if not include_examples and path.name.endswith(".example.yaml"):
            continue
        out += [Obj(path.name, d) for d in load_yaml_docs(path)]
    return out


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.kind == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in of_kind(objs, kind) if name is None or o.name == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o.id for o in found]}"
    return found[0]


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD file in deploy/crds/."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in load_yaml_docs(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                out[(f"{group}/{version['name']}", kind)] = schema
    return out


def _strict(schema: Any) -> Any:
    """Unknown fields are errors (like ``kubectl apply --validate=strict``), except where the
    CRD itself says to keep them (``x-kubernetes-preserve-unknown-fields``)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "additionalProperties") and isinstance(value, dict):
                schema[key] = ({k: _strict(v) for k, v in value.items()} if key == "properties"
                               else _strict(value))
            elif key in ("items", "anyOf", "allOf", "oneOf"):
                schema[key] = _strict(value)
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        return [_strict(s) for s in schema]
    return schema


def validate_custom(obj: dict[str, Any]) -> list[str]:
    """Errors of a custom resource against its CRD schema (empty: valid)."""
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no CRD schema in deploy/crds for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validator.iter_errors(obj)]
    meta = obj.get("metadata", {})
    if not DNS_SUBDOMAIN.match(str(meta.get("name", ""))) or len(meta.get("name", "")) > 253:
        errors.append(f"metadata.name {meta.get('name')!r} is not a DNS subdomain")
    if "namespace" in meta and not DNS_LABEL.match(meta["namespace"]):
        errors.append(f"metadata.namespace {meta['namespace']!r} is not a DNS label")
    for field in ("labels", "annotations"):
        if not all(isinstance(v, str) for v in meta.get(field, {}).values()):
            errors.append(f"metadata.{field} values must be strings")
    return errors


def validate_builtin(obj: dict[str, Any], version: str) -> None:
    """Raises kubernetes_validate's ValidationError / SchemaNotFoundError."""
    kubernetes_validate.validate(obj, version, strict=True)


def is_custom(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, dict[str, Any]]]:
    for o in objs:
        if o.kind in ("Deployment", "StatefulSet"):
            yield o, o.body["spec"]["template"]["spec"]


def container(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's ``parley`` container."""
    [c] = [c for c in pod["containers"] if c["name"] == "parley"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@cache
def gen() -> ModuleType:
    """deploy/gen.py, imported once."""
    return load_module(DEPLOY / "gen.py", "parley_deploy_gen")


def load_module(path: Path, name: str) -> ModuleType:
    """Import a file that is not on sys.path (deploy/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
