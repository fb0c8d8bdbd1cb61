"""The two decoding paths of ``parse_report`` agree: the checked schema (``CHECKED_DECODER``,
what nearly every report takes) and the wire schema it falls back to (``REPORT_DECODER``, whose
loop records the deviations), over the shared corpus, generated reports and random mutations.

The wire path alone is what ``parse_report`` was before the checked schema; it is forced here
by a decoder that refuses everything.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stspilot.errors import ReportError
from stspilot.ingest.decode import extract_reports
from stspilot.lab.sample_reports import generate_reports, to_json_bytes
from stspilot.tlsrpt import reports
from stspilot.tlsrpt.reports import TlsReport, parse_report
from test_reports import (  # type: ignore[import-not-found]
    ERRORS,
    QUIRKS,
    _mutate,
    base,
    edit,
    json_values,
)


class _Refuse:
    """A decoder that sends every report down the wire schema's path."""

    def decode(self, data: bytes) -> object:
        raise msgspec.ValidationError("forced onto the wire schema")


def _outcome(data: bytes) -> TlsReport | tuple[str, str]:
    try:
        return parse_report(data)
    except ReportError as exc:
        return exc.code, str(exc)


def _both(data: bytes) -> tuple[TlsReport | tuple[str, str], TlsReport | tuple[str, str]]:
    checked = _outcome(data)
    saved = reports.CHECKED_DECODER
    reports.CHECKED_DECODER = _Refuse()  # type: ignore[assignment]
    try:
        wire = _outcome(data)
    finally:
        reports.CHECKED_DECODER = saved
    return checked, wire


def _assert_same(data: bytes) -> None:
    checked, wire = _both(data)
    assert checked == wire
    if isinstance(checked, TlsReport):
        # Equal models and equal deviations, in the same order, each the same text.
        assert checked.deviations == wire.deviations  # type: ignore[union-attr]


def _corpus_reports(corpus_dir: Path) -> Iterator[bytes]:
    for folder in ("tlsrpt-json", "tlsrpt-email"):
        for path in sorted((corpus_dir / folder).iterdir()):
            try:
                found = extract_reports(path.read_bytes())
            except ReportError:
                continue
            for item in found:
                yield item.json_bytes


def test_corpus_reports_agree(corpus_dir: Path) -> None:
    seen = 0
    for data in _corpus_reports(corpus_dir):
        _assert_same(data)
        seen += 1
    assert seen > 20


def _fresh_addresses(doc: dict[str, object], rng: random.Random) -> None:
    """An address of its own per failure detail (as bench/peers.py), some of them broken."""
    forms: list[Callable[[], str]] = [
        lambda: ".".join(str(rng.randrange(0, 256)) for _ in range(4)),
        lambda: f"2001:db8::{rng.getrandbits(16):x}",
        lambda: "",
        lambda: "01.2.3.4",
        lambda: "fe80::1%eth0",
    ]
    for policy in doc["policies"]:  # type: ignore[attr-defined]
        for detail in policy.get("failure-details", ()):
            for key in ("sending-mta-ip", "receiving-ip"):
                detail[key] = rng.choice(forms)()


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_reports_agree(seed: int) -> None:
    rng = random.Random(seed)
    for i, doc in enumerate(generate_reports(300, seed=seed, domains=("a.example", "B.example."))):
        if i % 2:
            _fresh_addresses(doc, rng)
        _assert_same(to_json_bytes(doc))


@pytest.mark.parametrize("case", QUIRKS, ids=[q[0] for q in QUIRKS])
def test_quirks_agree(case: tuple[str, Callable[[dict[str, object]], None], str, object]) -> None:
    _assert_same(edit(case[1]))


@pytest.mark.parametrize("case", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_agree(case: tuple[str, bytes | Callable[[dict[str, object]], None], str]) -> None:
    data = case[1] if isinstance(case[1], bytes) else edit(case[1])
    _assert_same(data)


def test_failure_detail_quirks_agree() -> None:
    """Each member of a failure detail set to each odd value the checked schema refuses."""
    odd: list[object] = ["", None, "unknown-type", "0.0.0.256", 7, "x" * 70]
    members = [
        "result-type", "failed-session-count", "sending-mta-ip", "receiving-ip",
        "receiving-mx-hostname", "receiving-mx-helo", "additional-information",
        "failure-reason-code", "additional-info-uri", "x-extension",
    ]  # fmt: skip
    for member in members:
        for value in odd:
            doc = base()
            doc["policies"][0]["failure-details"][0][member] = value
            _assert_same(json.dumps(doc).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 10), min_size=1, max_size=6), json_values)
def test_mutated_reports_agree(path: list[int], value: object) -> None:
    _assert_same(json.dumps(_mutate(base(), path, value)).encode())


@settings(max_examples=400)
@given(st.text(alphabet='a"\\', max_size=24).map(str.encode))
def test_escaped_quotes_are_counted(text: bytes) -> None:
    """``_escaped_quotes`` against reading the escapes left to right, as JSON does: an escaped
    backslash before a quote is no escaped quote."""
    at, pairs = 0, []
    while (at := text.find(b"\\", at)) >= 0:
        pairs.append(text[at + 1 : at + 2])
        at += 2
    assert reports._escaped_quotes(text) == pairs.count(b'"')
