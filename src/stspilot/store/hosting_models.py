"""Hosted policies as values: the domain, its versions, an MX sync; and the pure checks and
rendering every change goes through (RFC 8461 §3.2 grammar, §4.1 matching). No I/O, but for
reading the public suffix list bundled with its package, once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from stspilot.errors import ConfigError, InvalidName
from stspilot.sts.names import MAX_NAME, domain_name, fold_name, policy_host
from stspilot.sts.policy import (
    Policy,
    check_mode,
    fold_mx_pattern,
    format_policy,
    is_valid_mx_pattern,
    mx_matches,
)
from stspilot.sts.records import StsRecord, format_sts_record

POLICY_HOST_PREFIX = "mta-sts."
MAX_MX_PATTERNS = 64  # far more than any real MX set; keeps a policy file a few KiB


def check_domain_name(text: str) -> str:
    """A hosted domain: ``sts.names.domain_name`` (no IP literal, A-labels), short enough that
    ``mta-sts.`` + it is a name too (we serve the policy there), and not a public suffix
    (``co.uk``, ``github.io``: nobody's own name, and hosting one would squat every domain
    under it). ``InvalidName`` or ``ConfigError`` otherwise."""
    name = domain_name(text)
    if len(policy_host(name)) > MAX_NAME:
        raise InvalidName(text, f"{policy_host(name)} would be longer than {MAX_NAME} characters")
    if is_public_suffix(name):
        raise ConfigError(
            f"{name} is a public suffix (publicsuffix.org): host a domain registered under it"
        )
    return name


@lru_cache(maxsize=1)
def _suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the list bundled with the package: no network


def is_public_suffix(name: str) -> bool:
    """True for a name on the Public Suffix List (ICANN and private sections)."""
    return bool(_suffixes().is_public(name))


def check_mx_patterns(mode: str, patterns: Sequence[str]) -> tuple[str, ...]:
    """Normalised, de-duplicated ``mx`` patterns, valid per RFC 8461 §3.2."""
    out: list[str] = []
    for raw in patterns:
        pattern = fold_mx_pattern(raw)
        if not is_valid_mx_pattern(pattern):
            raise ConfigError(f"mx pattern {raw!r} is not a host name or *.zone (RFC 8461 §3.2)")
        if pattern not in out:
            out.append(pattern)
    if not out and mode != "none":
        raise ConfigError(f"mode {mode} needs at least one mx pattern (RFC 8461 §3.2)")
    if len(out) > MAX_MX_PATTERNS:
        raise ConfigError(f"at most {MAX_MX_PATTERNS} mx patterns")
    return tuple(out)


def render_policy(mode: str, mx: Sequence[str], max_age: int, *, crlf: bool) -> str:
    return format_policy(Policy("STSv1", check_mode(mode), max_age, tuple(mx)), crlf=crlf)


def plan_mx_sync(patterns: Sequence[str], live_mx: Sequence[str]) -> tuple[str, ...]:
    """The patterns after an MX sync: those that still cover a live host, in their order, then
    one exact name per live host nothing covers (RFC 8461 §4.1 matching)."""
    live = sorted({fold_name(h) for h in live_mx} - {""})
    keep = [p for p in patterns if any(mx_matches(p, h) for h in live)]
    missing = [h for h in live if not any(mx_matches(p, h) for p in keep)]
    return tuple(keep + missing)


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostedDomain:
    id: int
    domain: str
    tenant_id: int
    tenant: str
    mode: str
    mx: tuple[str, ...]
    max_age: int
    policy_id: str
    version: int
    policy_text: str
    crlf: bool
    auto_sync_mx: bool
    state: str
    remove_after: datetime | None
    pending_mx: tuple[str, ...] | None
    created_at: datetime
    updated_at: datetime

    @property
    def policy_host(self) -> str:
        return policy_host(self.domain)

    @property
    def sts_txt_value(self) -> str:
        """The ``_mta-sts`` TXT value to publish for the policy served now (RFC 8461 §3.1)."""
        return format_sts_record(StsRecord(self.policy_id))


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    policy_id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int
    policy_text: str
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServedPolicy:
    """What ``GET /.well-known/mta-sts.txt`` answers for one host."""

    domain: str
    policy_id: str
    version: int
    text: str


@dataclass(frozen=True, slots=True)
class MxSync:
    """An MX sync: what the live MX set asks for and whether it was applied."""

    domain: str
    live_mx: tuple[str, ...]
    current: tuple[str, ...]
    proposed: tuple[str, ...]
    applied: bool
    hosted: HostedDomain

    @property
    def changed(self) -> bool:
        return self.proposed != self.current

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(p for p in self.proposed if p not in self.current)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(p for p in self.current if p not in self.proposed)
