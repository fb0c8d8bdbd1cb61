"""Every MTA-STS policy and TXT record in the shared corpus, with the verdict SOURCES.md gives."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from stspilot.check.evaluate import evaluate
from stspilot.errors import PolicyError
from stspilot.facts import DnsStatus, TxtLookup
from stspilot.sts.policy import Mode, parse_policy
from stspilot.sts.records import select_sts_record

# SOURCES.md: "INVALID" rows and the Snawoot "DELIBERATELY INVALID" bodies, with our error code.
# bad-policy3/4 bodies are valid: their fault is the content type / HTTP status they get.
INVALID_POLICIES = {
    "real/indented-lines-dup-mx__4D5Y__tutanota.txt": "sts.policy.syntax",
    "real/prose-not-a-policy__naturesi.txt": "sts.policy.syntax",
    "real/template-mx-dot-placeholder-crlf__co-cddo-uk-gov.txt": "sts.policy.mx.invalid",
    "snawoot-testvectors/bad-policy1.loc__garbage.txt": "sts.policy.syntax",
    "snawoot-testvectors/bad-policy2.loc__enforce-without-mx.txt": "sts.policy.mx.missing",
    "snawoot-testvectors/bad-policy5.loc__max_age-not-numeric.txt": "sts.policy.max-age",
    "snawoot-testvectors/bad-policy6.loc__max_age-over-limit.txt": "sts.policy.max-age",
    "snawoot-testvectors/bad-policy7.loc__missing-mode.txt": "sts.policy.mode",
    "snawoot-testvectors/bad-policy8.loc__unknown-mode.txt": "sts.policy.mode",
}


def _policies(corpus: Path) -> list[Path]:
    files = sorted((corpus / "mta-sts-policies").glob("*/*.txt"))
    assert len(files) >= 40, "corpus policy files went missing"
    return files


def _expected_mode(name: str) -> Mode | None:
    # The real files are named after their mode; Snawoot's after the test domain.
    for mode in Mode:
        if name.startswith((f"{mode}__", f"{mode}-", f"mode-{mode}")):
            return mode
    if name.startswith(("testing.loc",)):
        return Mode.TESTING
    if name.startswith("valid-none"):
        return Mode.NONE
    return None


def test_every_policy_file_gets_its_verdict(corpus_dir: Path) -> None:
    seen_invalid = set()
    for path in _policies(corpus_dir):
        key = f"{path.parent.name}/{path.name}"
        data = path.read_bytes()
        if key in INVALID_POLICIES:
            with pytest.raises(PolicyError) as caught:
                parse_policy(data)
            assert caught.value.code == INVALID_POLICIES[key], key
            seen_invalid.add(key)
            continue
        policy = parse_policy(data)  # valid per SOURCES.md: must not raise
        assert policy.version == "STSv1"
        expected = _expected_mode(path.name)
        if expected is not None:
            assert policy.mode is expected, key
        assert policy.mx or policy.mode is Mode.NONE
    assert seen_invalid == set(INVALID_POLICIES), "an expected-invalid file is missing"


def test_policy_files_named_in_sources_exist(corpus_dir: Path) -> None:
    sources = (corpus_dir / "SOURCES.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(mta-sts-policies/[^`]+\.txt)`", sources))
    on_disk = {str(p.relative_to(corpus_dir)) for p in _policies(corpus_dir)}
    assert named == on_disk
    for key in INVALID_POLICIES:
        assert f"mta-sts-policies/{key}" in named


def test_policy_quirks_in_real_files(corpus_dir: Path) -> None:
    real = corpus_dir / "mta-sts-policies" / "real"
    cork = parse_policy(
        (real / "enforce-crlf-no-final-newline__cork.tech__google.txt").read_bytes()
    )
    assert cork.mode is Mode.ENFORCE and len(cork.mx) == 5  # CRLF, no final newline
    upper = parse_policy(
        (real / "enforce-uppercase-mx-maxage-max__ajax910__google.txt").read_bytes()
    )
    assert upper.max_age == 31557600 and "SMTP.GOOGLE.COM" in upper.mx
    wildcard = parse_policy((real / "enforce-wildcard__saludrgv__outlook.txt").read_bytes())
    assert wildcard.mx == ("*.mail.protection.outlook.com",)


# dnsmasq lines: txt-record=<name>,"<value>"
_TXT_LINE = re.compile(r'^txt-record=([^,]+),"(.*)"$')
EXPECTED_TXT = {
    "_mta-sts.bad-record1.loc": "sts.txt.not-sts",  # "id=...; v=STSv1;": v not first
    "_mta-sts.bad-record2.loc": "sts.txt.not-sts",  # garbage
    "_mta-sts.bad-record3.loc": "sts.txt.not-sts",  # v=STSv12: not a candidate
}


def test_snawoot_txt_records(corpus_dir: Path) -> None:
    text = (corpus_dir / "mta-sts-txt" / "snawoot__dnsmasq.conf.appendix.txt").read_text()
    records = {
        m.group(1): m.group(2) for line in text.splitlines() if (m := _TXT_LINE.match(line.strip()))
    }
    assert len(records) >= 15
    for name, value in records.items():
        selection = select_sts_record([(value.encode("ascii"),)])
        expected = EXPECTED_TXT.get(name)
        if expected is None:
            assert selection.record is not None, name
            assert selection.record.id == "20180907T090909"
            assert selection.notes == ()
        else:
            assert selection.record is None and selection.error_code == expected, name
    assert set(EXPECTED_TXT) <= set(records)


def test_snawoot_txt_records_through_evaluate(corpus_dir: Path) -> None:
    # The same vectors, as a sender would meet them: bad records mean no usable policy.
    from test_evaluate import HEALTHY  # type: ignore[import-not-found]

    text = (corpus_dir / "mta-sts-txt" / "snawoot__dnsmasq.conf.appendix.txt").read_text()
    for line in text.splitlines():
        if not (m := _TXT_LINE.match(line.strip())):
            continue
        lookup = TxtLookup(m.group(1), DnsStatus.OK, ((m.group(2).encode(),),))
        result = evaluate(replace(HEALTHY, sts_txt=lookup))
        assert result.effective.usable is (m.group(1) not in EXPECTED_TXT)
