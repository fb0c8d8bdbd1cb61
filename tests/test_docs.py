"""Docs that cannot drift: the findings reference and the check JSON schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from stspilot.check.evaluate import evaluate
from stspilot.check.json_doc import check_results_to_json
from stspilot.facts import FetchOutcome, TlsFailure
from stspilot.findings import render_catalogue_markdown
from test_evaluate import HEALTHY, fetch_fail, mx, tls_fail, with_probe  # type: ignore[import-not-found]

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_findings_reference_is_current() -> None:
    on_disk = (DOCS / "findings.md").read_text(encoding="utf-8")
    assert on_disk == render_catalogue_markdown(), (
        "docs/findings.md is stale: run `python -m stspilot.findings > docs/findings.md`"
    )


def test_findings_module_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "stspilot.findings"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == render_catalogue_markdown()


def _keys(value: Any, into: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            into.add(key)
            _keys(inner, into)
    elif isinstance(value, list):
        for inner in value:
            _keys(inner, into)
    return into


def test_check_json_schema_documents_every_key() -> None:
    results = [
        evaluate(HEALTHY),
        evaluate(
            with_probe(tls_fail(TlsFailure.EXPIRED))(
                mx("mx1.example.com", "mx2.example.com", "x.example.org")(HEALTHY)
            )
        ),
        evaluate(fetch_fail(FetchOutcome.TIMEOUT)(HEALTHY)),
    ]
    document = check_results_to_json(results)
    json.dumps(document)  # serialisable as is
    text = (DOCS / "check-json.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", text))
    keys = _keys(document, set())
    assert keys - documented == set(), "keys missing from docs/check-json.md"
    assert document["schema"] in text


def test_cli_reference_is_current() -> None:
    """docs/cli.md is generated from the CLI (`python -m stspilot.cli.reference`)."""
    import os

    from stspilot.cli.reference import render_cli_markdown

    text = render_cli_markdown()
    path = DOCS / "cli.md"
    if os.environ.get("STSPILOT_REGEN_DOCS"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        "docs/cli.md is stale: run `python -m stspilot.cli.reference > docs/cli.md` "
        "(or STSPILOT_REGEN_DOCS=1 .venv/bin/pytest -q -k doc)"
    )
    for command in ("check", "monitor check", "host set", "lab reports", "ingest"):
        assert f"## `stspilot {command}`" in text
