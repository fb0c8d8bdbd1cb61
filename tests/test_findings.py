"""The findings catalogue: complete texts, unique codes, and ``make`` filling the templates."""

from __future__ import annotations

import re

import pytest

from stspilot.findings import (
    CATALOGUE,
    SPECS,
    Severity,
    Spec,
    make,
    placeholders,
    render_catalogue_markdown,
)

CODE = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)+")


@pytest.mark.parametrize("spec", SPECS, ids=[s.code for s in SPECS])
def test_spec_is_complete(spec: Spec) -> None:
    assert CODE.fullmatch(spec.code), spec.code
    assert spec.title and spec.explanation.strip() and spec.fix.strip(), "empty text"
    assert spec.rfc.startswith("RFC ")
    assert spec.explanation != spec.fix


def test_codes_are_unique() -> None:
    assert len(CATALOGUE) == len(SPECS)


def test_make_fills_templates() -> None:
    finding = make(
        "sts.mx.not-covered",
        subject="mx9.example.com",
        host="mx9.example.com",
        patterns="*.example.net",
    )
    assert finding.severity is Severity.ERROR
    assert "mx9.example.com" in finding.detail and "*.example.net" in finding.detail
    assert finding.fix.startswith("Add the line mx: mx9.example.com to the policy")
    assert finding.subject == "mx9.example.com"
    assert finding.rfc == CATALOGUE["sts.mx.not-covered"].rfc


def test_make_overrides_severity_and_keeps_unknown_placeholders_visible() -> None:
    finding = make("mx.cert.expired", severity=Severity.INFO)
    assert finding.severity is Severity.INFO
    assert "{host}" in finding.detail  # a missing parameter is shown, never a crash


def test_make_exposes_subject_to_templates() -> None:
    finding = make("sts.policy.mx.duplicate", subject="mx.example.com")
    assert "mx.example.com" in finding.detail and "{" not in finding.detail + finding.fix


def test_make_rejects_unknown_codes() -> None:
    with pytest.raises(KeyError):
        make("no.such.code")


def test_placeholders() -> None:
    assert placeholders(CATALOGUE["sts.mx.not-covered"]) == {"host", "patterns"}


def test_catalogue_markdown_lists_every_code() -> None:
    text = render_catalogue_markdown()
    for spec in SPECS:
        assert f"### `{spec.code}` ({spec.severity.label})" in text
        assert spec.fix in text
