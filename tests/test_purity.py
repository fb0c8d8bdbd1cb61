"""The pure core does no I/O: proven per folder, over the transitive import closure.

Every module in a pure folder (``sts/``, ``tlsrpt/``, ``rollout/``) and the pure files of
``check/`` is covered the day it is added: the test walks each module's imports (module level and
inside functions, ``TYPE_CHECKING`` blocks excepted, since they never run), follows every
``stspilot`` module it reaches, and fails if any module in that closure imports a network, file,
database, process or clock facility, or reads the clock.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stspilot"
PURE_FOLDERS = ("sts", "tlsrpt", "rollout")
PURE_FILES = (
    "errors.py",
    "facts.py",
    "findings.py",
    "check/evaluate.py",
    "check/coverage.py",
    "check/dane.py",
    "check/dane_verdict.py",
    "check/render.py",
    "check/json_doc.py",
    "publish/plan.py",
)
FORBIDDEN = {
    "socket",
    "ssl",
    "selectors",
    "dns",
    "httpx",
    "h11",
    "sqlalchemy",
    "alembic",
    "asyncio",
    "aiosmtpd",
    "smtplib",
    "imaplib",
    "urllib.request",
    "http",
    "subprocess",
    "multiprocessing",
    "os",
    "shutil",
    "tempfile",
    "pathlib",
    "psycopg",
    "sqlite3",
    "starlette",
    "fastapi",
    "uvicorn",
    "time",
    "platformdirs",
}
CLOCK_READS = ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "monotonic(")


def _module_path(name: str) -> Path | None:
    rel = name.removeprefix("stspilot").lstrip(".").replace(".", "/")
    for candidate in (SRC / f"{rel}.py", SRC / rel / "__init__.py"):
        if rel and candidate.exists():
            return candidate
    return SRC / "__init__.py" if not rel else None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, package: str) -> set[str]:
    """Every module imported when this code runs (``if TYPE_CHECKING:`` blocks skipped)."""
    names: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            # ``from stspilot.x import y`` may name a submodule y
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


@cache
def _closure(module: str) -> frozenset[tuple[str, str]]:
    """(stspilot module, imported name) for every import reachable from ``module``."""
    seen: set[str] = set()
    edges: set[tuple[str, str]] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _runtime_imports(ast.parse(path.read_text()), package):
            edges.add((name, imported))
            if imported.split(".")[0] == "stspilot" and _module_path(imported):
                todo.append(imported)
                parent = imported.rpartition(".")[0]
                while parent:  # importing a.b.c runs a/__init__.py and a/b/__init__.py
                    todo.append(parent)
                    parent = parent.rpartition(".")[0]
    return frozenset(edges)


def _pure_modules() -> list[str]:
    files = [SRC / f for f in PURE_FILES]
    for folder in PURE_FOLDERS:
        files.extend(sorted((SRC / folder).rglob("*.py")))
    names = []
    for f in files:
        rel = f.relative_to(SRC).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        names.append(".".join(["stspilot", *parts]))
    return names


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_module_does_no_io(module: str) -> None:
    bad = sorted(
        f"{src} imports {name}"
        for src, name in _closure(module)
        if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN
    )
    assert not bad, f"{module} is pure core, but through its imports: {bad}"


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_module_reads_no_clock(module: str) -> None:
    reached = {src for src, _ in _closure(module)} | {module}
    for name in sorted(reached):
        path = _module_path(name)
        assert path is not None
        text = path.read_text()
        read = [c for c in CLOCK_READS if c in text]
        assert not read, f"{module} reaches {name}, which reads the clock ({read}): pass `now` in"


def test_every_pure_folder_has_modules() -> None:
    """The folders exist and hold code, so the parametrised tests above cannot pass vacuously."""
    for folder in PURE_FOLDERS:
        assert len(list((SRC / folder).glob("*.py"))) >= 3, folder


def test_the_closure_sees_impure_imports() -> None:
    """The walker itself: a probe module's closure does reach the network."""
    edges = _closure("stspilot.probes.fetch")
    assert any(name == "asyncio" or name == "ssl" for _, name in edges)
    edges = _closure("stspilot.check.run")
    assert any(src.startswith("stspilot.probes") for src, _ in edges)
