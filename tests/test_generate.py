"""generate: the records and policy file to publish, from the live MX set (pure, no network)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

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
    new_policy_id,
    normalize_rua,
    one_label_wildcard_covers,
)
from stspilot.sts.policy import is_valid_mx_pattern

NOW = datetime(2026, 11, 22, 13, 12, 0, tzinfo=UTC)
ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 §3.1


@pytest.mark.parametrize(
    ("now", "previous", "expected"),
    [
        (NOW, "", "20261122131200"),
        (NOW.astimezone(timezone(timedelta(hours=5))), "", "20261122131200"),  # UTC, not local
        (NOW.replace(microsecond=1234), "20261122131200", "20261122131200001234"),
        (NOW, "20261122131200", "20261122131200000000"),
        (NOW, "20261122131200000000", "20261122131200"),
    ],
)
def test_new_policy_id(now: datetime, previous: str, expected: str) -> None:
    got = new_policy_id(now, previous=previous)
    assert got == expected
    assert ID_RE.match(got)
    assert got != previous


def test_new_policy_id_needs_aware_time() -> None:
    with pytest.raises(ConfigError):
        new_policy_id(datetime(2026, 1, 1))  # naive on purpose


@pytest.mark.parametrize(
    ("pattern", "host", "covers"),
    [
        ("*.mx.example.com", "a.mx.example.com", True),
        ("*.mx.example.com", "a.b.mx.example.com", False),  # never two labels (RFC 8461 §4.1)
        ("*.mx.example.com", "mx.example.com", False),
        ("mx.example.com", "mx.example.com", True),
        ("mx.example.com", "mx.example.com.evil.net", False),
    ],
)
def test_one_label_wildcard(pattern: str, host: str, covers: bool) -> None:
    assert one_label_wildcard_covers(pattern, host) is covers


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
        name = host.rstrip(".").lower().encode("idna").decode()
        assert any(one_label_wildcard_covers(p, name) for p in got), host


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


def test_new_policy_id_avoids_ids_already_handed_out() -> None:
    taken: set[str] = set()
    for _ in range(10):
        taken.add(new_policy_id(NOW, previous="x", avoid=taken))
    assert len(taken) == 10 and all(ID_RE.match(i) and len(i) <= 32 for i in taken)


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
