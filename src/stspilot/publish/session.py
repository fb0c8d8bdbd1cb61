"""Build a ``Publisher`` for one domain from its configuration: the provider, the destination,
and the check's own probes (resolver and policy fetcher) for verification.

The one place that turns configuration into live objects, shared by the CLI, ``rollout
--apply``, the bench and the tests; callers hold it with ``async with``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from stspilot.check.run import CheckOptions, Probes
from stspilot.errors import ConfigError
from stspilot.publish.apply import Publisher
from stspilot.publish.config import DomainConfig
from stspilot.publish.destinations import parse_destination
from stspilot.publish.providers import DnsProvider
from stspilot.publish.rfc2136 import Rfc2136Provider
from stspilot.publish.verify import NameServer, Progress, VerifyOptions
from stspilot.store.journal import PublishJournal

if TYPE_CHECKING:
    from stspilot.store import Store


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_provider(
    config: DomainConfig, *, probes: Probes, show: Progress | None
) -> tuple[DnsProvider, NameServer]:
    """The zone's provider and the server whose NS set verification starts from."""
    zone = config.zone
    if zone.provider == "rfc2136":
        rfc = zone.rfc2136()
        return Rfc2136Provider(rfc), NameServer("primary", rfc.server, rfc.port)
    primary = zone.options.get("primary")
    if not primary:
        raise ConfigError(
            f"zone {zone.zone}: {zone.provider} needs primary = <address of a server of the "
            "zone> for verification"
        )
    server = NameServer("primary", str(primary), zone.nameserver_port)
    if zone.provider == "lexicon":
        from stspilot.publish.lexicon import LexiconProvider

        return LexiconProvider(zone, server), server
    from stspilot.publish.manual import ManualProvider

    return ManualProvider(zone.zone, server, show=show), server


@asynccontextmanager
async def open_publisher(
    store: Store,
    config: DomainConfig,
    *,
    check: CheckOptions,
    clock: Callable[[], dt.datetime] = utc_now,
    progress: Progress | None = None,
    actor: str = "",
    max_inline_wait: float = 600.0,
) -> AsyncIterator[Publisher]:
    probes = Probes(check)
    try:
        provider, primary = make_provider(config, probes=probes, show=progress)
        destination = parse_destination(
            config.policy, store=store, clock=clock, show=progress, actor=actor
        )
        publisher = Publisher(
            journal=PublishJournal(store),
            provider=provider,
            destination=destination,
            fetcher=probes.fetcher,
            zone=config.zone.zone,
            primary=primary,
            clock=clock,
            verify=VerifyOptions(timeout=config.verify_timeout),
            nameserver_port=config.zone.nameserver_port,
            max_inline_wait=max_inline_wait,
            progress=progress,
        )
        try:
            yield publisher
        finally:
            await provider.aclose()
    finally:
        await probes.aclose()
