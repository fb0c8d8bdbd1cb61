"""Proof of control before a tenant's name is served (issue 15).

A tenant user asks to host ``example.com``; nothing is served until the domain's DNS proves
the request comes from whoever controls it: a TXT record

    _stspilot-challenge.example.com.  TXT  "stspilot-verify=<token>"

where the token is an HMAC of the tenant and the name under the service's secret key (so it
differs per tenant, needs no storage, and cannot be guessed). A CNAME of ``mta-sts.<domain>``
to this service is not proof: a former customer's stale CNAME would let anyone claim the name.

Until the proof is found, every request to host a name gets the same answer (202 with the
record to publish), whether the name is free or hosted by another tenant, so the answer tells
nobody who hosts what. The app's own names and public suffixes are refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stspilot.probes.resolver import Resolver, ResolverConfig
from stspilot.store.hosting import POLICY_HOST_PREFIX
from stspilot.web.settings import WebContext, WebSettings

if TYPE_CHECKING:
    from stspilot.store.accounts import User

CHALLENGE_LABEL = "_stspilot-challenge"
CHALLENGE_PREFIX = "stspilot-verify="


@dataclass(frozen=True, slots=True)
class Challenge:
    name: str  # where the TXT record goes
    value: str  # what it says

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name + ".", "type": "TXT", "value": self.value}


def challenge(settings: WebSettings, tenant_id: int, domain: str) -> Challenge:
    mac = hmac.new(settings.secret_key, f"host:{tenant_id}:{domain}".encode(), hashlib.sha256)
    return Challenge(f"{CHALLENGE_LABEL}.{domain}", CHALLENGE_PREFIX + mac.hexdigest()[:32])


def is_own_name(settings: WebSettings, domain: str) -> bool:
    """The service's own names (and what would put a policy host on one) are not hostable."""
    own = set(settings.public_hosts)
    for target in (settings.policy_cname_target, settings.txt_delegation_zone):
        if target:
            own.add(target.lower().rstrip("."))
    return domain in own or POLICY_HOST_PREFIX + domain in own


def resolver_config(settings: WebSettings) -> ResolverConfig:
    """The resolver the proof is looked up with: the live checks' (tests point it at the
    lab's DNS server), else the system's."""
    options = settings.check_options
    if options is None or options.nameserver is None:
        return ResolverConfig()
    return ResolverConfig(nameservers=(options.nameserver,), port=options.dns_port)


async def proven(settings: WebSettings, wanted: Challenge) -> bool:
    """True when the challenge's TXT record is published (one of the records says exactly
    ``wanted.value``)."""
    resolver = Resolver(resolver_config(settings))
    try:
        found = await resolver.lookup_txt(wanted.name)
    finally:
        await resolver.aclose()
    value = wanted.value.encode()
    return any(b"".join(record).strip() == value for record in found.records)


async def hosting_proof_missing(
    ctx: WebContext, user: User, domain: str, tenant_id: int
) -> str | None:
    """For the dashboard's form: None when ``user`` may host ``domain`` now, else what to do
    (the same words whether the name is free or another tenant's). Raises ``ConfigError``
    for names never hostable, ``Conflict`` for the tenant's own hosted name."""
    import asyncio

    from stspilot.errors import ConfigError
    from stspilot.store.accounts import Conflict
    from stspilot.store.hosting import check_domain_name

    name = check_domain_name(domain)
    if is_own_name(ctx.settings, name):
        raise ConfigError(f"{name} is this service's own name; it cannot be hosted")
    if not ctx.settings.require_hosting_proof or user.is_admin:
        return None
    current = await asyncio.to_thread(ctx.hosting.get, name)
    if current is not None and current.tenant_id == tenant_id:
        raise Conflict(f"{name} is hosted already")
    wanted = challenge(ctx.settings, tenant_id, name)
    if not await proven(ctx.settings, wanted):
        return (
            f'To prove you control {name}, publish {wanted.name}. TXT "{wanted.value}" '
            "and submit again; nothing is served for the name until then."
        )
    if current is not None:
        raise Conflict(f"{name} is hosted for another account; ask the operator to move it")
    return None
