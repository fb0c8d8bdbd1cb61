"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real reports and policies (never copied into the repository).

    Looked up at ``$STSPILOT_CORPUS`` or ``../shared/corpus`` next to the checkout; tests that
    need it skip cleanly where it is absent.
    """
    path = Path(os.environ.get("STSPILOT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (path / "SOURCES.md").is_file():
        pytest.skip(f"shared corpus not found at {path}")
    return path
