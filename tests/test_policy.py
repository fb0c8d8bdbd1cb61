"""The policy file (RFC 8461 §3.2) and MX pattern matching (§4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.errors import PolicyError
from stspilot.findings import CATALOGUE
from stspilot.sts.policy import (
    MAX_AGE_LIMIT,
    Mode,
    Policy,
    covering_pattern,
    format_policy,
    is_valid_mx_pattern,
    mx_matches,
    parse_policy,
)

GOOD = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n"

VALID = [
    # (text, mode, max_age, mx, note codes)
    (GOOD, Mode.ENFORCE, 604800, ("mail.example.com",), ()),
    (GOOD.replace("\n", "\r\n"), Mode.ENFORCE, 604800, ("mail.example.com",), ()),
    (GOOD.rstrip("\n"), Mode.ENFORCE, 604800, ("mail.example.com",), ()),  # no final newline
    (
        "version:STSv1\nmode:\ttesting \nmx:  *.example.com\t\nmax_age: 0086400",
        Mode.TESTING,
        86400,
        ("*.example.com",),
        (),
    ),
    ("version: STSv1\nmode: none\nmax_age: 86400\n", Mode.NONE, 86400, (), ()),
    (
        "version: STSv1\nmode: enforce\nmx: a.example\nmx: b.example\nmax_age: 0\n",
        Mode.ENFORCE,
        0,
        ("a.example", "b.example"),
        (),
    ),
    (
        f"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {MAX_AGE_LIMIT}\n",
        Mode.ENFORCE,
        MAX_AGE_LIMIT,
        ("a.example",),
        (),
    ),
    (
        "version: STSv1\nmode: enforce\nmx: A.Example\nmx: a.example\nmax_age: 1\n",
        Mode.ENFORCE,
        1,
        ("A.Example",),
        ("sts.policy.mx.duplicate",),
    ),
    (
        "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
        Mode.ENFORCE,
        1,
        ("a.example",),
        ("sts.policy.duplicate-key",),
    ),
    (
        "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 1\nmax_age: x\n",
        Mode.TESTING,
        1,
        ("a.example",),
        ("sts.policy.duplicate-key",),
    ),
    (
        "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 1\nfoo: bar baz\n",
        Mode.TESTING,
        1,
        ("a.example",),
        ("sts.policy.extension",),
    ),
    (
        "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 1\nnote: café\n",
        Mode.TESTING,
        1,
        ("a.example",),
        ("sts.policy.extension",),
    ),
    (
        "version: STSv1\r\nmode: testing\nmx: a.example\r\nmax_age: 1\n",
        Mode.TESTING,
        1,
        ("a.example",),
        ("sts.policy.line-endings",),
    ),
    (
        "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 1\n\n\n",
        Mode.TESTING,
        1,
        ("a.example",),
        ("sts.policy.whitespace",),
    ),
    (
        "version: STSv1\nmode: none\nmx: xn--bcher-kva.example\nmax_age: 1",
        Mode.NONE,
        1,
        ("xn--bcher-kva.example",),
        (),
    ),
]

# Correctness properties, not speed: hypothesis' default 200 ms deadline per example measures
# the machine's load (8-14 on two cores made single examples miss it), not the parser.
_SETTINGS = settings(deadline=None)


@pytest.mark.parametrize(("text", "mode", "max_age", "mx", "notes"), VALID)
def test_parse_policy_valid(
    text: str, mode: Mode, max_age: int, mx: tuple[str, ...], notes: tuple[str, ...]
) -> None:
    for body in (text, text.encode()):
        policy = parse_policy(body)
        assert (policy.version, policy.mode, policy.max_age, policy.mx) == (
            "STSv1",
            mode,
            max_age,
            mx,
        )
        assert tuple(n.code for n in policy.notes) == notes
        assert all(n.code in CATALOGUE for n in policy.notes)


def _with(replace: str, by: str) -> str:
    assert replace in GOOD
    return GOOD.replace(replace, by)


INVALID = [
    ("", "sts.policy.syntax"),
    ("\n", "sts.policy.syntax"),
    ("garbage", "sts.policy.syntax"),
    ("\ufeff" + GOOD, "sts.policy.syntax"),
    ("  " + GOOD, "sts.policy.syntax"),  # A4.4: no leading whitespace
    (_with("mode: enforce\n", "mode: enforce\n\n"), "sts.policy.syntax"),  # no blank lines between
    (_with("mode: enforce", "mode : enforce"), "sts.policy.syntax"),  # no space before ":"
    (_with("mode: enforce", "# comment\nmode: enforce"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: enf\rorce"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: enforce\x01"), "sts.policy.syntax"),
    (_with("version: STSv1", "version: STSv2"), "sts.policy.version"),
    (_with("version: STSv1", "version: stsv1"), "sts.policy.version"),
    (_with("version: STSv1\n", ""), "sts.policy.version"),
    (_with("version: STSv1", "Version: STSv1"), "sts.policy.version"),  # keys are case-sensitive
    (_with("mode: enforce\n", ""), "sts.policy.mode"),
    (_with("mode: enforce", "mode: report"), "sts.policy.mode"),
    (_with("mode: enforce", "mode: Enforce"), "sts.policy.mode"),
    (_with("mode: enforce", "mode:"), "sts.policy.mode"),
    (_with("max_age: 604800\n", ""), "sts.policy.max-age"),
    (_with("604800", "31557601"), "sts.policy.max-age"),
    (_with("604800", "-1"), "sts.policy.max-age"),
    (_with("604800", "+1"), "sts.policy.max-age"),
    (_with("604800", "1.5"), "sts.policy.max-age"),
    (_with("604800", "1 000"), "sts.policy.max-age"),
    (_with("604800", "99999999999"), "sts.policy.max-age"),
    (_with("604800", "١٢"), "sts.policy.max-age"),  # non-ASCII digits
    (_with("mx: mail.example.com\n", ""), "sts.policy.mx.missing"),
    (_with("mx: mail.example.com\n", "MX: mail.example.com\n"), "sts.policy.mx.missing"),
    (_with("mail.example.com", "."), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "mail.example.com."), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "*"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "*.*.example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "mail.*.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "*example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "a.example.com, b.example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "[192.0.2.1]"), "sts.policy.mx.invalid"),  # address literal
    (_with("mail.example.com", "192.0.2.1"), "sts.policy.mx.invalid"),  # RFC 1123 §2.1
    (_with("mail.example.com", "*.0.2.1"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "[IPv6:2001:db8::1]"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "2001:db8::1"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "*.example.com."), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "*."), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "mail..example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "mail-.example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "mail.example.com *.example.com"), "sts.policy.mx.invalid"),
    (_with("mode: enforce", "mode: enforce\nnote:"), "sts.policy.syntax"),  # ext value 1*vchar
    (_with("mode: enforce", "mode: enforce\nnote:\t "), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: enforce\nnote: a\tb"), "sts.policy.syntax"),  # SP only inside
    (_with("mode: enforce", "mode: enforce\n:x"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: enforce\n_x: y"), "sts.policy.syntax"),  # name starts alnum
    (_with("mode: enforce", "mode: enforce\n" + "n" * 33 + ": y"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode:enforce\r\r"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: enforce\rmx: b.example"), "sts.policy.syntax"),  # lone CR
    (_with("version: STSv1", "version: STSv1\tx"), "sts.policy.syntax"),  # no tab inside a value
    (_with("version: STSv1", "version\t: STSv1"), "sts.policy.syntax"),
    (_with("mode: enforce", "mode: testing enforce"), "sts.policy.mode"),
    (_with("604800", "0x10"), "sts.policy.max-age"),
    (_with("604800", "1e5"), "sts.policy.max-age"),
    (_with("604800", "00031557601"), "sts.policy.max-age"),  # 11 digits: over 1*10DIGIT
    (_with("mail.example.com", "mail_1.example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "-mail.example.com"), "sts.policy.mx.invalid"),
    (_with("mail.example.com", "bücher.example"), "sts.policy.mx.invalid"),  # A4.13: A-labels
    (_with("mail.example.com", "a" * 64 + ".example"), "sts.policy.mx.invalid"),
]


@pytest.mark.parametrize(("text", "code"), INVALID)
def test_parse_policy_invalid(text: str, code: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.code == code
    assert code in CATALOGUE


def test_parse_policy_rejects_invalid_utf8() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(GOOD.encode() + b"note: \xff\n")
    assert caught.value.code == "sts.policy.syntax"


@pytest.mark.parametrize("crlf", [False, True])
def test_format_policy(crlf: bool) -> None:
    policy = Policy(
        "STSv1", Mode.TESTING, 86400, ("mx1.example.com", "*.example.net"), (("x", "y"),)
    )
    text = format_policy(policy, crlf=crlf)
    end = "\r\n" if crlf else "\n"
    assert text == end.join(
        [
            "version: STSv1",
            "mode: testing",
            "mx: mx1.example.com",
            "mx: *.example.net",
            "max_age: 86400",
            "x: y",
            "",
        ]
    )
    assert parse_policy(text) == policy


MATCHES = [
    # RFC 8461 §4.1 and checklist A7.3/A7.4
    ("mail.example.com", "mail.example.com", True),
    ("mail.example.com", "MAIL.Example.COM", True),
    ("MAIL.example.com", "mail.example.com.", True),  # trailing root dot ignored
    ("mail.example.com", "mail.example.com.evil.net", False),  # anchored
    ("mail.example.com", "xmail.example.com", False),
    ("mail.example.com", "example.com", False),
    ("*.example.com", "mail.example.com", True),
    ("*.example.com", "MX1.EXAMPLE.COM.", True),
    ("*.example.com", "example.com", False),  # the wildcard needs a label
    ("*.example.com", "a.b.example.com", False),  # exactly one label
    ("*.example.com", ".example.com", False),
    ("*.example.com", "mail.example.com.evil.net", False),
    ("*.example.com", "mailexample.com", False),
    ("*.mx.microsoft", "icewolf-li.h-v1.mx.microsoft", False),  # D.5
    ("*.mx.microsoft", "contoso-com.mx.microsoft", True),
    ("*", "mail.example.com", False),  # invalid patterns match nothing
    ("mail.*.com", "mail.example.com", False),
    ("*.*.com", "a.b.com", False),
    ("*.example.com", "", False),
    ("mail.example.com", "", False),
    ("xn--bcher-kva.example", "XN--BCHER-KVA.example", True),
    ("xn--bcher-kva.example", "bücher.example", True),  # the same name: A-labels compared
    ("*.example", "bücher.example", True),
    ("*.example", "a.bücher.example", False),
    ("xn--bcher-kva.example", "bücher!.example", False),  # no name: matches nothing
]


@pytest.mark.parametrize(("pattern", "host", "expected"), MATCHES)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("patterns", "host", "expected"),
    [
        (("*.example.com", "mail.example.com"), "mail.example.com", "mail.example.com"),
        (("*.example.com", "other.example.com"), "mail.example.com", "*.example.com"),
        (("a.example.com", "b.example.com"), "c.example.com", None),
        ((), "c.example.com", None),
    ],
)
def test_covering_pattern(patterns: tuple[str, ...], host: str, expected: str | None) -> None:
    assert covering_pattern(patterns, host) == expected


# --- properties -----------------------------------------------------------------------------

_A_LABELS = ["xn--bcher-kva", "xn--mnchen-3ya", "xn--80ak6aa92e", "XN--BCHER-KVA"]
_labels = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True),
    st.sampled_from(_A_LABELS),
)
# RFC 1123 §2.1: the top-level label of a host name is never all digits.
_tlds = _labels.filter(lambda label: not label.isdigit())
_hosts = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_labels, max_size=3), _tlds
)
_patterns = st.one_of(_hosts, _hosts.map(lambda h: "*." + h))
_ext_keys = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,31}", fullmatch=True).filter(
    lambda k: k not in ("version", "mode", "max_age", "mx")
)
_ext_values = st.from_regex(r"[!-~é](?:[ !-~é]{0,20}[!-~é])?", fullmatch=True)


@st.composite
def _policies(draw: st.DrawFn) -> Policy:
    mode = draw(st.sampled_from(Mode))
    mx = draw(
        st.lists(_patterns, min_size=0 if mode is Mode.NONE else 1, max_size=5, unique_by=str.lower)
    )
    extensions = draw(
        st.lists(st.tuples(_ext_keys, _ext_values), max_size=3, unique_by=lambda kv: kv[0])
    )
    max_age = draw(st.integers(0, MAX_AGE_LIMIT))
    return Policy("STSv1", mode, max_age, tuple(mx), tuple(extensions))


@_SETTINGS
@given(_policies(), st.booleans())
def test_policy_round_trip(policy: Policy, crlf: bool) -> None:
    assert parse_policy(format_policy(policy, crlf=crlf)) == policy
    assert parse_policy(format_policy(policy, crlf=crlf).encode()) == policy


_TOKENS = ["version: STSv1", "mode: ", "enforce", "mx: ", "*.", "a.b", "max_age: ", "1", "\n"]
_TOKENS += ["\r\n", "\r", " ", ":", "\t", "\ufeff", "é"]
_LINES = ["version: STSv1", "mode: testing", "mx: a.example", "max_age: 9", "x: y", "", " mx: b"]
_policy_like = st.one_of(
    st.text(),
    st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join),
    st.lists(st.sampled_from(_LINES), max_size=8).map("\n".join),
)


@_SETTINGS
@given(_policy_like)
def test_parse_policy_raises_only_policy_errors_on_text(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError as error:
        assert error.code in CATALOGUE


@_SETTINGS
@given(st.binary(max_size=200))
def test_parse_policy_raises_only_policy_errors_on_bytes(data: bytes) -> None:
    try:
        parse_policy(data)
    except PolicyError as error:
        assert error.code in CATALOGUE


@_SETTINGS
@given(_patterns, _hosts)
def test_wildcard_covers_exactly_one_label(pattern: str, host: str) -> None:
    # A match by a wildcard means: same label count as the pattern, same parent zone.
    if mx_matches(pattern, host) and pattern.startswith("*."):
        assert host.count(".") == pattern.count(".")
        assert host.lower().endswith(pattern[1:].lower())
    assert is_valid_mx_pattern(pattern)


def _reference_matches(pattern: str, candidate: str) -> bool:
    """RFC 8461 Appendix B ``policyMatches`` for one pattern, with §4.1's RFC 6125 comparison.

    RFC 6125 §6.4.1: DNS names compare case-insensitively; a fully qualified name's trailing
    root dot is not part of the comparison (checklist A7.3).
    """
    mx = pattern.lower()
    candidate = candidate.lower()
    if candidate.endswith("."):
        candidate = candidate[:-1]
    # Literal match.
    if mx == candidate:
        return True
    # Wildcard matches only the leftmost label; wildcards must always be followed by a '.'.
    if mx[0] == "*":
        parts = candidate.split(".", 1)  # SplitN(candidate, '.', 2)
        if len(parts) > 1 and parts[1] == mx[2:]:
            return True
    return False


def _recase(draw: st.DrawFn, text: str) -> str:
    flags = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if up else c.lower() for c, up in zip(text, flags, strict=True))


@st.composite
def _pattern_and_host(draw: st.DrawFn) -> tuple[str, str]:
    """A valid pattern and an MX name that often nearly matches it (same zone, +-1 label)."""
    pattern = draw(_patterns)
    zone = pattern.removeprefix("*.")
    how = draw(st.sampled_from(["unrelated", "same", "prefix", "suffix", "parent"]))
    if how == "unrelated":
        host = draw(_hosts)
    elif how == "same":
        host = zone
    elif how == "prefix":  # one, two or three labels in front of the zone
        host = ".".join([*draw(st.lists(_labels, min_size=1, max_size=3)), zone])
    elif how == "suffix":  # the zone, then more labels: must never match
        host = ".".join([draw(_labels), zone, draw(_tlds)])
    else:
        host = zone.partition(".")[2] or zone
    host = _recase(draw, host)
    if draw(st.booleans()):
        host += "."
    return pattern, host


@_SETTINGS
@given(_pattern_and_host())
def test_mx_matches_agrees_with_the_rfc_pseudocode(case: tuple[str, str]) -> None:
    pattern, host = case
    assert is_valid_mx_pattern(pattern)
    assert mx_matches(pattern, host) is _reference_matches(pattern, host)
    assert mx_matches(pattern.upper(), host) is _reference_matches(pattern, host)
    assert (covering_pattern([pattern], host) == pattern) is _reference_matches(pattern, host)
