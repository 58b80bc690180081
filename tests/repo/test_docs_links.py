"""The docs cite only what exists.

In README.md and docs/*.md, outside fenced code blocks:

- an inline code span that is a repository path with a file extension, ```projector/fold.py```,
  names a file of the repository; ```projector/fold.py:apply``` or
  ```projector/runner.py:Runner.run``` also names something *defined* in it (a function, class
  or assignment, at the top level or inside the named class; an import does not count);
- a code span that is a directory path ending in ``/`` (```deploy/k8s/```) names a directory;
- a relative markdown link, ``[text](path#anchor)``, resolves, from the page's folder, to a
  file inside the repository, and its ``#anchor`` (if any) to a heading of that page.

And no file of the repository cites the design notes that live outside it (they are not
shipped with Parley; docs/architecture.md and docs/providers.md hold what the code relies on).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_FILE_REF = re.compile(
    r"(?P<path>[A-Za-z_][\w.-]*(?:/[\w.-]+)+\.(?:py|md|yaml|yml|toml|json|txt|lock|cfg))"
    r"(?::(?P<symbol>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))?"
)
_DIR_REF = re.compile(r"[A-Za-z_][\w.-]*(?:/[\w.-]+)*/")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_EXTERNAL = ("http://", "https://", "mailto:")
_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match:
            found.add(slug(match.group("text")))
    return frozenset(found)


@cache
def definitions(module: Path) -> dict[str, ast.AST]:
    """Dotted names defined in ``module``: top-level ones and, inside classes, their members."""
    found: dict[str, ast.AST] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for name in names:
                found[prefix + name] = node
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(module.read_text(encoding="utf-8"), str(module)).body, "")
    return found


def problems_in(text: str, page: Path) -> list[str]:
    """Every reference or link in ``text`` (the content of ``page``) that does not resolve."""
    where = page.relative_to(REPO) if page.is_relative_to(REPO) else page
    out: list[str] = []
    for number, line in prose_lines(text):
        at = f"{where}:{number}"
        for span in _CODE_SPAN.finditer(line):
            content = span.group(2).strip()
            ref = _FILE_REF.fullmatch(content)
            if ref is not None:
                out.extend(f"{at}: `{content}`: {p}" for p in _file_problems(ref["path"], ref["symbol"]))
            elif _DIR_REF.fullmatch(content) and not (REPO / content).is_dir():
                out.append(f"{at}: `{content}`: no such directory in the repository")
        for link in _LINK.finditer(_CODE_SPAN.sub("", line)):
            target = link["target"].strip("<>")
            if target.startswith(_EXTERNAL):
                continue
            problem = _link_problem(target, page)
            if problem:
                out.append(f"{at}: link ({target}): {problem}")
    return out


def _file_problems(path: str, symbol: str | None) -> list[str]:
    file = REPO / path
    if not file.is_file():
        return ["no such file in the repository"]
    if symbol is None:
        return []
    if file.suffix != ".py":
        return ["only Python files have named definitions"]
    if symbol not in definitions(file):
        return [f"{symbol} is not defined in {path}"]
    return []


def _link_problem(target: str, page: Path) -> str | None:
    path, _, fragment = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.is_relative_to(REPO):
        return "points outside the repository"
    if not file.exists():
        return "no such file"
    if fragment and file.suffix == ".md" and fragment not in anchors(file):
        return f"no heading with anchor #{fragment} in {file.relative_to(REPO)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_references_and_links_resolve(page: Path) -> None:
    problems = problems_in(page.read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_made_up_references() -> None:
    page = REPO / "docs" / "architecture.md"
    text = "\n".join([
        "`projector/fold.py:apply` and `projector/runner.py:Runner.run` exist,",
        "`projector/fold.py:reduce` does not, nor `projector/folding.py`,",
        "nor `projector/runner.py:Runner.walk`, nor `contracts/`'s sibling `contract/`;",
        "`projector/fold.py:Any` is only imported there.",
        "[fine](projector.md#the-fold), [no file](nowhere.md), [no anchor](projector.md#nowhere),",
        "[outside](../../elsewhere/NOTES.md).",
        "```",
        "`made/up.py` inside a fenced block is an example, not a reference",
        "```",
    ])
    problems = problems_in(text, page)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "`projector/fold.py:reduce`: reduce is not defined in projector/fold.py",
        "`projector/folding.py`: no such file in the repository",
        "`projector/runner.py:Runner.walk`: Runner.walk is not defined in projector/runner.py",
        "`contract/`: no such directory in the repository",
        "`projector/fold.py:Any`: Any is not defined in projector/fold.py",
        "link (nowhere.md): no such file",
        "link (projector.md#nowhere): no heading with anchor #nowhere in docs/projector.md",
        "link (../../elsewhere/NOTES.md): points outside the repository",
    ]


# Written in two parts so that this file does not cite them itself.
_OUTSIDE_NOTES = ("DESIGN" + ".md", "PROVIDERS" + ".md", "../" + "shared")
_SCANNED = (".py", ".md", ".yaml", ".yml", ".toml")
_SKIPPED_DIRS = {"__pycache__", "node_modules", "build", "dist"}


def repository_files() -> Iterator[Path]:
    """The repository's own text files (no virtualenv, caches, or local data)."""
    stack = [REPO]
    while stack:
        folder = stack.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                if not entry.name.startswith(".") and entry.name not in _SKIPPED_DIRS \
                        and not entry.name.endswith(".egg-info"):
                    stack.append(entry)
            elif entry.suffix in _SCANNED:
                yield entry


def test_nothing_cites_design_notes_outside_the_repository() -> None:
    found = [
        f"{file.relative_to(REPO)}:{number}: {line.strip()}"
        for file in sorted(repository_files())
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
        if any(note in line for note in _OUTSIDE_NOTES)
    ]
    assert not found, "cite docs/architecture.md or docs/providers.md instead:\n" + "\n".join(found)
