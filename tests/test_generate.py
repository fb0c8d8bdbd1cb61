"""generate: the records and policy file to publish, from the live MX set (pure, no network)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.errors import ConfigError
from stspilot.rollout.generate import (
    DAY,
    WEEK,
    TxtRecord,
    derive_mx_patterns,
    generate,
    normalize_rua,
)
from stspilot.sts.policy import is_valid_mx_pattern, mx_matches

NOW = datetime(2026, 11, 22, 13, 12, 0, tzinfo=UTC)
ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 §3.1


# One MX matcher (sts.policy.mx_matches): the check's coverage and the enforce gate used two
# until issue 10; this table holds both callers to the same answers.
MATCH_TABLE = [
    ("*.mx.example.com", "a.mx.example.com", True),
    ("*.mx.example.com", "a.b.mx.example.com", False),  # never two labels (RFC 8461 §4.1)
    ("*.mx.example.com", "mx.example.com", False),
    ("mx.example.com", "mx.example.com", True),
    ("mx.example.com", "MX.Example.COM.", True),  # case and root dot (checklist A7.3)
    ("MX.example.com", "mx.example.com", True),
    ("mx.example.com", "mx.example.com.evil.net", False),
    ("*.example.com", "mail.example.com.evil.net", False),
    ("mx.xn--bcher-kva.example", "mx.bücher.example", True),  # A-labels compared
    ("*", "mail.example.com", False),  # invalid patterns match nothing, in both
    ("mail.*.com", "mail.example.com", False),
    ("192.0.2.1", "192.0.2.1", False),  # A4.12: no IP literals
]


@pytest.mark.parametrize(("pattern", "host", "covers"), MATCH_TABLE)
def test_check_and_gate_agree_on_coverage(pattern: str, host: str, covers: bool) -> None:
    from stspilot.rollout.evidence import MxState
    from stspilot.rollout.gate import _covered
    from stspilot.rollout.runbooks import keep_patterns
    from stspilot.sts.policy import covering_pattern

    check = covering_pattern([pattern], host)  # check/coverage.py
    gate = _covered(MxState(host), [pattern])  # rollout/gate.py
    assert (check is not None) is covers
    assert (gate is not None) is covers
    if covers:  # the runbooks keep a covering pattern, and add no exact line for its host
        assert keep_patterns([pattern], [host]) == (pattern.lower(),)


@pytest.mark.parametrize(
    ("hosts", "wildcards", "patterns", "wildcard_notes"),
    [
        # one exact line per host, normalised, de-duplicated, sorted
        (
            ["MX2.Example.com.", "mx1.example.com", "mx1.example.com"],
            False,
            ("mx1.example.com", "mx2.example.com"),
            0,
        ),
        # no wildcard unless asked
        (
            ["example-com.mail.protection.outlook.com"],
            False,
            ("example-com.mail.protection.outlook.com",),
            0,
        ),
        # Microsoft 365's documented wildcard for its rotating zone, only when asked
        (["example-com.mail.protection.outlook.com"], True, ("*.mail.protection.outlook.com",), 1),
        # a single host elsewhere keeps its exact line even with --wildcards
        (["mail.example.com"], True, ("mail.example.com",), 0),
        # several hosts in one zone share a wildcard; a deeper host keeps its own line
        (
            ["alt1.aspmx.l.google.com", "alt2.aspmx.l.google.com", "aspmx.l.google.com"],
            True,
            ("*.aspmx.l.google.com", "aspmx.l.google.com"),
            1,
        ),
        # the one-label rule: *.mx.microsoft would NOT cover this host (checklist A7.4, D.5)
        (
            ["tenant.h-v1.mx.microsoft", "other.h-v1.mx.microsoft"],
            True,
            ("*.h-v1.mx.microsoft",),
            1,
        ),
        # never *.com
        (["a.com", "b.com"], True, ("a.com", "b.com"), 0),
        # IDN hosts become A-labels (RFC 8461 §3.2, checklist A4.13)
        (["mx.bücher.example"], False, ("mx.xn--bcher-kva.example",), 0),
    ],
)
def test_derive_mx_patterns(
    hosts: list[str], wildcards: bool, patterns: tuple[str, ...], wildcard_notes: int
) -> None:
    got, notes = derive_mx_patterns(hosts, wildcards=wildcards)
    assert got == patterns
    assert [n.code for n in notes] == ["sts.policy.mx.wildcard"] * wildcard_notes
    for host in hosts:  # every live host is covered by exactly the patterns produced
        assert any(mx_matches(p, host) for p in got), host


@pytest.mark.parametrize(
    ("mode", "max_age", "expected_age"),
    [
        ("testing", None, DAY),
        ("enforce", None, WEEK),
        ("none", None, DAY),
        ("enforce", 1209600, 1209600),
    ],
)
def test_generate_records_and_policy(mode: str, max_age: int | None, expected_age: int) -> None:
    pub = generate(
        "Example.COM",
        mx_hosts=["mx2.example.com.", "mx1.example.com"],
        mode=mode,
        rua=["mailto:tls@reports.example.net"],
        now=NOW,
        max_age=max_age,
    )
    assert pub.domain == "example.com"
    assert pub.max_age == expected_age
    assert pub.policy_id == "20261122131200"
    assert pub.zone_lines == (
        '_smtp._tls.example.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tls@reports.example.net"',
        '_mta-sts.example.com. 3600 IN TXT "v=STSv1; id=20261122131200"',
    )
    assert pub.policy_text == (
        f"version: STSv1\r\nmode: {mode}\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\n"
        f"max_age: {expected_age}\r\n"
    )
    assert pub.policy_url == "https://mta-sts.example.com/.well-known/mta-sts.txt"
    data = pub.to_dict()
    assert data["id"] == pub.policy_id and data["mx"] == ["mx1.example.com", "mx2.example.com"]
    assert [r["name"] for r in data["records"]] == [
        "_smtp._tls.example.com.",
        "_mta-sts.example.com.",
    ]
    # RFC 8461 §8.1: the policy is served before the id that announces it
    assert "Serve the policy" in pub.steps[1] and "id=20261122131200" in pub.steps[2]
    assert pub.findings == ()


def test_generate_policy_parses_back_when_policy_module_exists() -> None:
    policy = pytest.importorskip("stspilot.sts.policy")
    pub = generate("example.com", mx_hosts=["mx1.example.com"], mode="enforce", now=NOW)
    parsed = policy.parse_policy(pub.policy_text)
    assert str(parsed.mode) == "enforce"
    assert parsed.max_age == WEEK
    assert tuple(parsed.mx) == ("mx1.example.com",)


def test_generate_default_rua_warns_it_depends_on_the_mx() -> None:
    pub = generate("example.com", mx_hosts=["mx.example.com"], mode="testing", now=NOW)
    assert pub.rua == ("mailto:tlsrpt@example.com",)
    assert [f.code for f in pub.findings] == ["tlsrpt.rua.depends-on-mx"]


def test_generate_warns_for_failing_mx_probe() -> None:
    pub = generate(
        "example.com",
        mx_hosts=["mx1.example.com", "relay.example.com"],
        mode="enforce",
        rua=["https://reports.example.net/tlsrpt"],
        now=NOW,
        probe_failures={"Relay.Example.com.": "certificate has expired"},
    )
    codes = [(f.code, f.subject) for f in pub.findings]
    assert codes == [("generate.mx.probe-failed", "relay.example.com")]
    assert "certificate has expired" in pub.findings[0].detail
    assert "refuse" in pub.findings[0].detail  # enforce wording


def test_generate_mode_none_without_mx() -> None:
    pub = generate("example.com", mx_hosts=[], mode="none", rua=["mailto:a@b.example"], now=NOW)
    assert pub.policy_text == "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"


def test_long_rua_list_is_split_into_255_octet_strings() -> None:
    uris = [f"mailto:reports{i:03d}@collector.example.net" for i in range(12)]
    pub = generate("example.com", mx_hosts=["mx.example.com"], mode="testing", rua=uris, now=NOW)
    line = pub.tlsrpt_txt.zone_line()
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == pub.tlsrpt_txt.value


def test_txt_quotes_are_escaped() -> None:
    assert TxtRecord("x.", 'a"b\\c').zone_line() == 'x. 3600 IN TXT "a\\"b\\\\c"'


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mailto:tlsrpt@example.com", "mailto:tlsrpt@example.com"),
        ("https://r.example.net/v1/tlsrpt", "https://r.example.net/v1/tlsrpt"),
        # RFC 8460 §3: , ! ; must be percent-encoded inside a URI (checklist B2.6)
        ("mailto:a!b@example.com", "mailto:a%21b@example.com"),
        ("https://r.example.net/a;b,c", "https://r.example.net/a%3Bb%2Cc"),
    ],
)
def test_normalize_rua(uri: str, expected: str) -> None:
    assert normalize_rua(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "http://r.example.net/",
        "mailto:nobody",
        "ftp://x.example",
        "https:///path",
        "mailto:a b@x.example",
    ],
)
def test_normalize_rua_rejects(uri: str) -> None:
    with pytest.raises(ConfigError):
        normalize_rua(uri)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "report"}, "mode"),
        ({"mx_hosts": []}, "no MX"),
        ({"mx_hosts": [""]}, "null MX"),
        ({"max_age": 31557601}, "max_age"),
        ({"max_age": -1}, "max_age"),
        ({"domain": "not a domain"}, "domain"),
        ({"domain": "192.0.2.1"}, "IP address"),  # sts.names: an IP literal is no domain
        ({"rua": ["mailto:tlsrpt@192.0.2.1"]}, "rua"),
        ({"patterns": ["mx.bücher!.example"]}, "mx pattern"),
    ],
)
def test_generate_rejects(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "domain": "example.com",
        "mx_hosts": ["mx.example.com"],
        "mode": "testing",
        "now": NOW,
        **kwargs,
    }
    domain = args.pop("domain")
    with pytest.raises(ConfigError, match=message):
        generate(domain, **args)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=30),
    st.lists(st.text(max_size=30), max_size=4),
    st.lists(st.text(max_size=40), max_size=3),
    st.sampled_from(["testing", "enforce", "none", "report"]),
    st.booleans(),
)
def test_generate_raises_only_config_error(
    domain: str, hosts: list[str], rua: list[str], mode: str, wildcards: bool
) -> None:
    try:
        pub = generate(domain, mx_hosts=hosts, mode=mode, rua=rua, now=NOW, wildcards=wildcards)
    except ConfigError:
        return
    assert ID_RE.match(pub.policy_id)
    assert pub.policy_text.endswith("\r\n") and pub.policy_text.isascii()
    assert all(is_valid_mx_pattern(p) for p in pub.mx_patterns), pub.mx_patterns
    for line in pub.zone_lines:
        assert line.isascii() and "\n" not in line


def test_generate_writes_u_label_names_as_a_labels() -> None:
    """Domain, live MX hosts and kept patterns all pass sts.names (RFC 8461 §3.2, A4.13)."""
    pub = generate("Bücher.Example.", mx_hosts=["MX.bücher.example."], mode="testing", now=NOW)
    assert pub.domain == "xn--bcher-kva.example"
    assert pub.mx_patterns == ("mx.xn--bcher-kva.example",)
    assert pub.sts_txt.name == "_mta-sts.xn--bcher-kva.example."
    kept = generate(
        "example.com",
        mx_hosts=["a.mx.example"],
        mode="enforce",
        now=NOW,
        patterns=["*.MX.Bücher.example."],
    )
    assert kept.mx_patterns == ("*.mx.xn--bcher-kva.example",)
