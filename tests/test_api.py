"""The public library API: every exported name resolves, and importing the package is cheap."""

from __future__ import annotations

import subprocess
import sys

import stspilot


def test_every_exported_name_resolves() -> None:
    for name in stspilot.__all__:
        assert getattr(stspilot, name) is not None, name


def test_import_does_not_load_heavy_modules() -> None:
    heavy = "('sqlalchemy', 'httpx', 'dns', 'rich')"
    code = f"import sys, stspilot; print(','.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
