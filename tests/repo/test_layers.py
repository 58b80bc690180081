"""Imports point down, and never in a circle.

The layers are declared in pyproject.toml, ``[tool.importlinter]`` (docs/architecture.md,
"Layers", says what each holds): test support (``parley.testing``, which nothing of the project
imports), then composition (``deploy``, ``parley.cli``, ``parley.process``, ``parley.run``, …),
then the roles (``receiver``, ``projector``, ``consumers``, which never import each other), then
Parley's plumbing (the rest of ``parley``), then ``contracts``. ``lint-imports`` checks those
contracts; this file runs it, checks that every module of ``parley`` is placed in a layer (a
new one must be), and that no modules import each other in a circle, whatever their packages.

Imports under ``if TYPE_CHECKING:`` count like any other (a type is a dependency too), and so
do imports inside functions: a lazy import still points somewhere.
"""

from __future__ import annotations

import graphlib
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration

REPO = Path(__file__).resolve().parents[2]


@cache
def _config() -> dict[str, Any]:
    return read_configuration(str(REPO / "pyproject.toml"))


def _contract(contract_id: str) -> dict[str, Any]:
    contracts: list[dict[str, Any]] = _config()["contracts_options"]
    [contract] = [c for c in contracts if c.get("id") == contract_id]
    return contract


@pytest.fixture(scope="module")
def graph() -> Iterator[grimp.ImportGraph]:
    """Every import between the project's modules. ``deploy`` is not an installed package:
    like ``lint-imports``, look for it in the repository's root (for the building only)."""
    roots = _config()["session_options"]["root_packages"]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))
        built = grimp.build_graph(*roots, exclude_type_checking_imports=False, cache_dir=None)
    yield built


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_every_module_of_parley_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    placed = {name.strip().strip("()") for layer in _contract("layers")["layers"]
              for name in re.split(r"[:|]", layer)}
    unplaced = graph.find_children("parley") - placed
    assert not unplaced, f"add {sorted(unplaced)} to a layer in pyproject.toml [tool.importlinter]"


def test_no_modules_import_each_other_in_a_circle(graph: grimp.ImportGraph) -> None:
    allowed = {tuple(part.strip() for part in line.split("->"))
               for line in _contract("layers").get("ignore_imports", [])}
    imports = {module: {imported for imported in graph.find_modules_directly_imported_by(module)
                        if (module, imported) not in allowed}
               for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise AssertionError("modules import each other in a circle: " + " -> ".join(cycle)
                             ) from None
