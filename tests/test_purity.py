"""The pure core imports no I/O library: no sockets, DNS, HTTP, database or clock-reading code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stspilot"
CORE = [
    "errors",
    "facts",
    "findings",
    "records",
    "policy",
    "reports",
    "evaluate",
    "coverage",
    "rollout",
    "evidence",
    "gate",
    "runbooks",
    "generate",
    "summary",
    "summary_export",
    "advice",
    "report_schema",
    "report_text",
]
FORBIDDEN = {
    "socket",
    "ssl",
    "dns",
    "httpx",
    "sqlalchemy",
    "asyncio",
    "aiosmtpd",
    "smtplib",
    "urllib.request",
    "http",
    "subprocess",
    "os",
    "psycopg",
    "starlette",
    "time",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_io(module: str) -> None:
    path = SRC / f"{module}.py"
    assert path.exists(), f"{module}.py is listed as pure core but does not exist"
    bad = {n for n in _imports(path) if n in FORBIDDEN or n.split(".")[0] in FORBIDDEN}
    assert not bad, f"{module}.py is pure core but imports {sorted(bad)}"
    text = path.read_text()
    assert "datetime.now(" not in text and "time.time(" not in text, (
        "core must take time as a parameter"
    )
