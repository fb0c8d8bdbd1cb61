"""The public API is pinned (as httpx pins its own): ``stspilot.__all__``, the names the
README's library snippet uses and the names docs/api.md documents are one and the same list."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import stspilot

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "stspilot" / "__init__.py"


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def _used_names(code: str) -> set[str]:
    """``stspilot.X`` attributes and ``from stspilot import X`` names in a code block."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "stspilot":
                names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "stspilot":
            names.update(alias.name for alias in node.names)
    return names


def _documented() -> set[str]:
    """Every name in the first column of a table in docs/api.md."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
    return names


def test_all_is_what_the_module_exports() -> None:
    assert len(stspilot.__all__) == len(set(stspilot.__all__))
    assert sorted(stspilot.__all__) == stspilot.__all__
    for name in stspilot.__all__:
        assert getattr(stspilot, name) is not None, name
    assert set(stspilot.__all__) - {"__version__"} == set(stspilot._EXPORTS)


def test_type_checkers_see_every_exported_name() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    seen: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom):
                    seen.update(alias.asname or alias.name for alias in inner.names)
    assert seen == set(stspilot.__all__) - {"__version__"}


def test_docs_api_lists_exactly_the_public_api() -> None:
    documented = _documented()
    assert documented - set(stspilot.__all__) == set(), "documented but not exported"
    assert set(stspilot.__all__) - documented == set(), "exported but not in docs/api.md"


def test_readme_and_docs_snippets_use_only_the_public_api() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "api.md", INIT):
        text = page.read_text(encoding="utf-8")
        blocks = _python_blocks(text) if page.suffix == ".md" else []
        if page == INIT:  # the docstring's example, after ``::``
            doc = ast.get_docstring(ast.parse(text)) or ""
            blocks = [re.sub(r"(?m)^    ", "", doc.split("::", 1)[1])]
        used = set().union(*(_used_names(b) for b in blocks))
        assert used, f"{page.name} has no library snippet"
        assert used <= set(stspilot.__all__), (page.name, used - set(stspilot.__all__))


def test_the_error_tree_is_exported() -> None:
    from stspilot import errors

    for name in dir(errors):
        value = getattr(errors, name)
        ours = isinstance(value, type) and value.__module__ == errors.__name__
        if ours and issubclass(value, Exception) and value is not errors.DuplicateReport:
            assert name in stspilot.__all__, name  # DuplicateReport never leaves the store
