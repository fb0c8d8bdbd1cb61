"""The hosted service publishes too: the TXT records of its delegation zone follow the hosted
policies, through the same path and in the same order as one domain's publication.

With ``STSPILOT_TXT_DELEGATION_ZONE`` set, each customer points ``_mta-sts.<domain>`` (CNAME,
RFC 8461 §8.2) at ``<domain>.<zone>``, where the operator keeps the TXT record
(``web/hosting.py`` shows the customer those records). ``sync_delegation`` makes that zone say
what the store serves: for every hosted domain whose record differs, the policy is first
fetched through its public URL as a sender would (when a fetcher is given; one not served yet
is skipped and named, never announced), then the records are bumped in batches, read back and
verified at every authoritative server (``bulk.py``). A domain being decommissioned loses its
record once its wait is over (``remove_after``), before the operator removes the policy:
the TXT record goes first (RFC 8461 §8.3; checklist G5.7). Records are never removed for
domains the store does not know: they are reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from stspilot.facts import FetchOutcome
from stspilot.probes.fetch import PolicyFetcher
from stspilot.publish.bulk import BulkResult, change_txt_many, read_all
from stspilot.publish.providers import STS_PREFIX, TxtChange
from stspilot.publish.rfc2136 import Rfc2136Provider
from stspilot.publish.verify import NameServer, VerifyOptions
from stspilot.rollout.generate import TXT_TTL

if TYPE_CHECKING:
    from stspilot.store import Store
    from stspilot.store.hosting import HostedDomain


@dataclass(frozen=True, slots=True)
class SyncResult:
    changed: tuple[str, ...]  # domains whose record was written (bumped or removed)
    skipped: dict[str, str] = field(default_factory=dict)  # domain -> why not (policy not served)
    bulk: BulkResult | None = None


def record_name(domain: str, zone: str) -> str:
    return f"{domain}.{zone.rstrip('.')}."


def wanted_value(hosted: HostedDomain, now: datetime) -> str | None:
    """The TXT value the delegation zone should hold for ``hosted`` now (None: no record)."""
    from stspilot.store.hosting import DECOMMISSIONING

    if hosted.state == DECOMMISSIONING and hosted.remove_after and now >= hosted.remove_after:
        return None
    return hosted.sts_txt_value


async def _served(fetcher: PolicyFetcher, hosted: HostedDomain) -> str:
    """'' when the public URL serves exactly the store's body, else why not."""
    got = await fetcher.fetch_policy(hosted.domain)
    if got.outcome is not FetchOutcome.OK:
        return f"{got.url}: {got.outcome.value} {got.error}".strip()
    if got.body != hosted.policy_text.encode():
        return f"{got.url} serves another policy than the store's"
    return ""


async def sync_delegation(
    store: Store,
    provider: Rfc2136Provider,
    servers: tuple[NameServer, ...],
    *,
    zone: str,
    clock: Callable[[], datetime],
    fetcher: PolicyFetcher | None = None,
    verify: VerifyOptions = VerifyOptions(),
    batch: int = 100,
    concurrency: int = 32,
    dry_run: bool = False,
) -> SyncResult:
    """Bring the delegation zone in line with the store (see the module docstring);
    ``dry_run`` only says which domains would change."""
    from stspilot.store.hosting import HostedPolicies

    hosted = HostedPolicies(store).list_domains()
    now = clock()
    names = [record_name(h.domain, zone) for h in hosted]
    current = await read_all(provider, names, concurrency)
    pending = [
        (h, name, wanted_value(h, now))
        for h, name, cur in zip(hosted, names, current, strict=True)
        if not cur.holds(STS_PREFIX, wanted_value(h, now))
    ]
    skipped: dict[str, str] = {}
    if fetcher is not None:
        gate = asyncio.Semaphore(concurrency)

        async def check(h: HostedDomain) -> tuple[str, str]:
            async with gate:
                return h.domain, await _served(fetcher, h)

        bumps = [h for h, _, value in pending if value is not None]
        for domain, why in await asyncio.gather(*(check(h) for h in bumps)):
            if why:
                skipped[domain] = why
    todo = [(h, n, v) for h, n, v in pending if h.domain not in skipped]
    if not todo or dry_run:
        return SyncResult(tuple(h.domain for h, _, _ in todo), skipped)
    changes = [TxtChange(n, STS_PREFIX, v, TXT_TTL) for _, n, v in todo]
    result = await change_txt_many(provider, servers, changes, batch=batch, verify=verify)
    return SyncResult(tuple(h.domain for h, _, _ in todo), skipped, result)
