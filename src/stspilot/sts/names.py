"""Domain and host names: the one place a name from outside becomes the name stspilot uses.

Pure core: no I/O, no clock. Every door calls this module: CLI arguments, files of domains, the
store, the web forms and API, policy ``mx`` lines and report fields.

A canonical name is what DNS and RFC 8461 compare (§3.2 and §4.1: A-labels, case-insensitive,
the root dot not part of the name; checklist A4.13, A7.3):

- case folded, surrounding space and one trailing root dot removed;
- U-labels mapped (UTS 46, non-transitional) and encoded as A-labels with IDNA 2008
  (the ``idna`` package); ``xn--`` labels must decode;
- letters, digits and hyphens only, no label starting or ending with a hyphen, labels of 1-63
  octets, at most 253 octets in all (RFC 1035 §2.3.4, RFC 1123 §2.1);
- never an IP literal (``192.0.2.1``, ``[2001:db8::1]``, ``2001:db8::1``): MTA-STS is about
  names, and a sender never looks up ``_mta-sts.192.0.2.1``.

``domain_name`` is strict (two labels at least: a policy domain); ``host_name`` allows one label
(an MX target may be one, RFC 5321 §2.3.5); ``fold_name`` never raises and is for comparing names
read from the wire (report fields), where a quirk must not lose the report.
"""

from __future__ import annotations

import re

from stspilot.errors import InvalidName

__all__ = [
    "MAX_NAME",
    "InvalidName",
    "domain_name",
    "fold_name",
    "host_name",
    "is_ip_literal",
    "policy_host",
    "policy_url",
    "same_name",
    "sts_record_name",
    "tlsrpt_record_name",
]

MAX_NAME = 253  # octets, without the root dot (RFC 1035 §2.3.4: 255 on the wire)
MAX_LABEL = 63
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z")


def is_ip_literal(text: str) -> bool:
    """An IPv4 dotted quad, an IPv6 address, or either in brackets."""
    t = text.strip().rstrip(".")
    if t.startswith("[") and t.endswith("]"):
        return True
    return bool(_IPV4.match(t)) or (":" in t and all(c in "0123456789abcdefABCDEF:." for c in t))


def _to_ascii(text: str, name: str) -> str:
    """A-labels for a name with U-labels or ``xn--`` labels (IDNA 2008 + UTS 46)."""
    import idna  # its tables cost ~30 ms to load; most names are plain ASCII and never need it

    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True, transitional=False)
        # ``idna.encode`` accepts some A-labels it would not produce: round-trip to be sure.
        idna.decode(ascii_name)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidName(text, f"not a valid internationalised name: {exc}") from None
    return ascii_name.decode("ascii")


def _canonical(text: str, *, min_labels: int) -> str:
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidName(text, "empty")
    if is_ip_literal(name):
        raise InvalidName(text, "an IP address, not a name")
    name = name.lower()
    if not name.isascii() or "xn--" in name:
        name = _to_ascii(text, name)
    if len(name) > MAX_NAME:
        raise InvalidName(text, f"longer than {MAX_NAME} characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise InvalidName(text, "an empty label (two dots in a row)")
        if len(label) > MAX_LABEL:
            raise InvalidName(text, f"a label longer than {MAX_LABEL} characters")
        if not _LDH_LABEL.match(label):
            raise InvalidName(
                text, f"{label!r}: only letters, digits and inner hyphens are allowed"
            )
    if len(labels) < min_labels:
        raise InvalidName(text, "needs at least two labels, like example.com")
    if labels[-1].isdigit():
        raise InvalidName(text, "the top-level label is all digits")
    return name


def domain_name(text: str) -> str:
    """The canonical policy domain for ``text``, or ``InvalidName`` (two labels at least)."""
    return _canonical(text, min_labels=2)


def host_name(text: str) -> str:
    """The canonical host name for ``text`` (an MX target, a policy host), or ``InvalidName``."""
    return _canonical(text, min_labels=1)


def fold_name(text: str) -> str:
    """A comparison key for a name read from the wire; never raises.

    The canonical name when ``text`` is one; otherwise the text lower-cased without its root
    dot, so two spellings of the same odd value still compare equal.
    """
    quick = text.strip().lower()
    if quick.endswith("."):
        quick = quick[:-1]
    if quick.isascii() and "xn--" not in quick:
        return quick
    try:
        return _canonical(text, min_labels=1)
    except InvalidName:
        return quick


def same_name(a: str, b: str) -> bool:
    """Do ``a`` and ``b`` name the same DNS name (case, root dot and IDNA aside)?"""
    return fold_name(a) == fold_name(b)


def policy_host(domain: str) -> str:
    """``mta-sts.<domain>``: the host that serves the policy (RFC 8461 §3.2)."""
    return f"mta-sts.{domain}"


def policy_url(domain: str) -> str:
    """Where senders fetch the policy: ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
    (RFC 8461 §3.3)."""
    return f"https://{policy_host(domain)}/.well-known/mta-sts.txt"


def sts_record_name(domain: str) -> str:
    """``_mta-sts.<domain>``: where the MTA-STS TXT record lives (RFC 8461 §3.1)."""
    return f"_mta-sts.{domain}"


def tlsrpt_record_name(domain: str) -> str:
    """``_smtp._tls.<domain>``: where the TLS-RPT TXT record lives (RFC 8460 §3)."""
    return f"_smtp._tls.{domain}"
