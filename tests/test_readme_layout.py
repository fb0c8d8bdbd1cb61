"""The README's Layout block cannot drift: every folder and file it names exists, every room
(package) and top-level module of src/stspilot is named, and a room whose files are listed is
listed whole."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "stspilot"


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", text, flags=re.S | re.M)
    assert match, "README.md has no Layout block"
    return match.group(1).splitlines()


def _rooms() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per entry of the block (``""`` for src/stspilot's own files, ``"sts/"``, ``"/tests/"``
    for a folder at the repository root, ...): the words of its first line, and of all its
    lines (continuation lines included)."""
    heads: dict[str, list[str]] = {}
    entries: dict[str, list[str]] = {}
    current = ""
    for line in _layout_block():
        if line == "src/stspilot/":
            current = ""
            continue
        words = line.replace(":", " ").replace(";", " ").split()
        head = re.match(r"( {0,2})([a-z_]+/)(?=\s|$)", line)
        if head:
            current = head.group(2) if head.group(1) else "/" + head.group(2)
        if head or current not in heads:
            heads[current] = words
        entries.setdefault(current, []).extend(words)
    return heads, entries


HEADS, ENTRIES = _rooms()


def _py_files(words: list[str]) -> set[str]:
    return {w for w in words if re.fullmatch(r"[a-z_]+\.py", w)}


def test_every_room_and_top_level_module_is_named() -> None:
    rooms = {e for e in ENTRIES if e and not e.startswith("/")}
    packages = {p.parent.name + "/" for p in PACKAGE.glob("*/__init__.py")}
    assert rooms == packages, (
        f"README names {sorted(rooms - packages)}, tree has {sorted(packages - rooms)}"
    )
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert _py_files(ENTRIES[""]) == top


def test_every_named_path_exists() -> None:
    for entry, words in ENTRIES.items():
        if entry.startswith("/"):  # tests/, bench/, docs/ at the repository root
            assert (ROOT / entry[1:]).is_dir(), entry
        elif entry:
            assert (PACKAGE / entry).is_dir(), entry
        for word in (w.strip("(),.`") for w in words):
            if re.fullmatch(r"(tests|docs|bench|scripts)/[\w./-]+\.\w+", word):
                assert (ROOT / word).exists(), word


def test_a_room_whose_files_are_listed_is_listed_whole() -> None:
    """Files on a room's own line are all of its files; a file named further down must exist."""
    for entry, words in ENTRIES.items():
        if not entry or entry.startswith("/"):
            continue
        for name in _py_files(words):
            assert (PACKAGE / entry / name).is_file(), entry + name
        listed = _py_files(HEADS[entry]) - {"__init__.py"}
        if listed:
            on_disk = {p.name for p in (PACKAGE / entry).glob("*.py")} - {"__init__.py"}
            assert listed == on_disk, (entry, sorted(listed - on_disk), sorted(on_disk - listed))
