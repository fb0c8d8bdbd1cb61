"""sts/names.py: the one canonical form of domain and host names, for every door."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stspilot.errors import ConfigError
from stspilot.sts.names import (
    InvalidName,
    domain_name,
    fold_name,
    host_name,
    is_ip_literal,
    policy_host,
    same_name,
    sts_record_name,
    tlsrpt_record_name,
)

GOOD = [
    ("example.com", "example.com"),
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("  example.com \n", "example.com"),
    ("mail-1.example.co.uk", "mail-1.example.co.uk"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),  # UTS 46 maps case before IDNA 2008
    ("ab--cd.example", "ab--cd.example"),  # a legal host name, though not an IDNA label
    ("a" * 63 + ".example", "a" * 63 + ".example"),
    ("123.example", "123.example"),  # digits are fine below the top level
]

BAD = [
    ("", "empty"),
    (".", "empty"),
    ("com", "two labels"),
    ("192.0.2.1", "IP address"),
    ("10.0.0.1", "IP address"),
    ("[2001:db8::1]", "IP address"),
    ("2001:db8::1", "IP address"),
    ("::1", "IP address"),
    ("exa mple.com", "only letters"),
    ("example..com", "empty label"),
    ("-example.com", "only letters"),
    ("example-.com", "only letters"),
    ("ex_ample.com", "only letters"),
    ("user@example.com", "only letters"),
    ("https://example.com", "only letters"),
    ("example.com/path", "only letters"),
    ("a" * 64 + ".example", "label longer"),
    (".".join(["a" * 63] * 4) + ".com", "longer than 253"),
    ("xn--zz.example", "internationalised"),  # not valid punycode
    ("example.123", "all digits"),
    ("☃\u200b.example", "internationalised"),  # zero-width space is disallowed
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_domain_name_canonicalises(text: str, expected: str) -> None:
    assert domain_name(text) == expected
    assert domain_name(expected) == expected  # idempotent


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_domain_name_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidName) as info:
        domain_name(text)
    assert reason in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    assert info.value.text == text


def test_host_name_allows_one_label_but_nothing_else_looser() -> None:
    assert host_name("Localhost.") == "localhost"
    with pytest.raises(InvalidName):
        host_name("192.0.2.1")
    with pytest.raises(InvalidName):
        host_name("mx_1.example")


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("192.0.2.1", True),
        ("[::1]", True),
        ("fe80::1", True),
        ("example.com", False),
        ("1.2.3.example", False),
        ("cafe.example", False),
    ],
)
def test_is_ip_literal(text: str, ip: bool) -> None:
    assert is_ip_literal(text) is ip


def test_fold_name_never_raises_and_compares() -> None:
    assert fold_name("MX1.Example.COM.") == "mx1.example.com"
    assert fold_name("Bücher.example") == "xn--bcher-kva.example"
    assert fold_name("not a name!") == "not a name!"
    assert same_name("bücher.example.", "XN--BCHER-KVA.example")
    assert not same_name("a.example", "b.example")


def test_record_and_host_names() -> None:
    assert policy_host("example.com") == "mta-sts.example.com"
    assert sts_record_name("example.com") == "_mta-sts.example.com"
    assert tlsrpt_record_name("example.com") == "_smtp._tls.example.com"


@given(st.text(max_size=300))
def test_any_text_is_a_name_or_a_typed_error(text: str) -> None:
    try:
        name = domain_name(text)
    except InvalidName:
        return
    assert name == domain_name(name)
    assert name.isascii() and name == name.lower() and len(name) <= 253
    assert not name.endswith(".")
    fold_name(text)


@given(
    st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4
    ),
    st.sampled_from(["com", "example", "test", "co"]),
)
def test_every_ldh_name_is_accepted(labels: list[str], tld: str) -> None:
    name = ".".join([*labels, tld])
    assert domain_name(name.upper() + ".") == name
