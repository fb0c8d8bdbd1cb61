"""``stspilot host remove`` of a hosted domain whose TXT record the operator keeps in the
delegation zone (Knot primary + secondary, TSIG): the record goes first, journaled and verified
at every server, then the policy; while it cannot go, the domain stays hosted (exit 4, the
message naming the journal run and the command that finishes it). The same rule as the API's
DELETE (``publish/hosted.removal_pending``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import pytest
from sqlalchemy import update

from publish_support import DnsWorld, dns_world
from stspilot.cli import EXIT_OK, EXIT_OPERATIONAL, main
from stspilot.lab.authdns import KEY_NAME
from stspilot.publish.hosted import record_name
from stspilot.publish.providers import STS_PREFIX, TxtChange, change_txt
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies, hosted_domains
from stspilot.store.journal import PublishJournal

pytestmark = [pytest.mark.db, pytest.mark.slow]
ZONE = "deleg.test"
DOMAIN = "a.example"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DnsWorld]:
    yield from dns_world(tmp_path, "knot", secondary=True, zone_name=ZONE)


def txt(world: DnsWorld, *, at: str) -> list[bytes]:
    server = world.primary if at == "primary" else world.secondary
    assert server is not None
    q = dns.message.make_query(record_name(DOMAIN, ZONE), "TXT")
    r = dns.query.udp(q, server.address, port=world.port, timeout=2)
    return [b"".join(rd.strings) for rs in r.answer for rd in rs]


def wait_secondary(world: DnsWorld, want: list[bytes]) -> None:
    import time

    deadline = time.monotonic() + 20
    while txt(world, at="secondary") != want:
        assert time.monotonic() < deadline, "the secondary never followed"
        time.sleep(0.05)


@pytest.fixture
def setup(
    world: DnsWorld, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """A decommissioned hosted domain whose wait is over, its record still in the delegation
    zone, the publish config for that zone; returns the CLI's network options."""
    import asyncio

    now = datetime.now(UTC)
    tenant = Accounts(store).add_tenant("acme", now=now)
    hosting = HostedPolicies(store)
    hosting.add(DOMAIN, tenant_id=tenant.id, mode="enforce", mx=["mx.a.example"], now=now)
    gone = hosting.decommission(DOMAIN, now=now)

    async def publish() -> None:
        change = TxtChange(record_name(DOMAIN, ZONE), STS_PREFIX, gone.sts_txt_value)
        provider = world.provider()
        try:
            await change_txt(provider, change, expected=(None,))
        finally:
            await provider.aclose()

    asyncio.run(publish())
    wait_secondary(world, [gone.sts_txt_value.encode()])
    with store.engine.begin() as conn:  # every cached policy has expired
        conn.execute(
            update(hosted_domains)
            .where(hosted_domains.c.domain == DOMAIN)
            .values(remove_after=now - timedelta(seconds=1))
        )
    key = tmp_path / "tsig.key"
    key.write_text(world.secret)
    key.chmod(0o600)
    config = tmp_path / "publish.toml"
    config.write_text(
        f'[zones."{ZONE}"]\nprovider = "rfc2136"\nserver = "{world.primary.address}"\n'
        f'port = {world.port}\nkey_name = "{KEY_NAME}"\nkey_secret_file = "{key}"\n'
        "verify_timeout = 20\ntimeout = 1\n"
    )
    # As an operator runs it: the zone and the config from the environment.
    monkeypatch.setenv("STSPILOT_TXT_DELEGATION_ZONE", ZONE)
    monkeypatch.setenv("STSPILOT_PUBLISH_CONFIG", str(config))
    return ["--nameserver", f"{world.primary.address}:{world.port}"]


def test_host_remove_takes_the_delegation_record_first(
    world: DnsWorld,
    store: Store,
    store_url: str,
    setup: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert txt(world, at="primary")
    # The delegation zone's name servers are in the zone: no other resolver is needed.
    code = main(["host", "remove", DOMAIN, "--db", store_url])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    # The record is gone at every server, and the policy only after.
    assert txt(world, at="primary") == [] and txt(world, at="secondary") == []
    assert HostedPolicies(store).get(DOMAIN) is None
    (run,) = PublishJournal(store).runs(DOMAIN)
    assert run.action == "hosted-sync" and run.state == "done"
    assert run.actor.endswith("(cli)") and run.destination == "hosted-delegation"
    assert [(s.kind, s.state) for s in run.steps] == [("remove-sts", "verified")]
    assert f"journal run {run.id}" in out and f"{DOMAIN} is no longer hosted" in out


def test_while_the_record_cannot_go_the_domain_stays_hosted(
    world: DnsWorld,
    store: Store,
    store_url: str,
    setup: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    standing = txt(world, at="primary")
    world.primary.pause()  # the primary does not answer: the record cannot be removed
    try:
        code = main(["host", "remove", DOMAIN, "--db", store_url, *setup])
    finally:
        world.primary.resume()
    err = capsys.readouterr().err
    assert code == EXIT_OPERATIONAL, err
    (run,) = PublishJournal(store).runs(DOMAIN)
    assert run.state == "failed" and run.steps[0].kind == "remove-sts"
    assert f"journal run {run.id}" in err and f"stspilot host remove {DOMAIN}" in err
    assert f"stspilot publish resume {DOMAIN}" in err
    assert HostedPolicies(store).get(DOMAIN) is not None  # never an orphan
    assert txt(world, at="primary") == standing
    # Asked again before the run is finished: refused, naming the same run, nothing new.
    assert main(["host", "remove", DOMAIN, "--db", store_url, *setup]) == EXIT_OPERATIONAL
    assert f"journal run {run.id} (failed)" in capsys.readouterr().err
    assert len(PublishJournal(store).runs(DOMAIN)) == 1
    assert HostedPolicies(store).get(DOMAIN) is not None
    # The journal's run is finished by `publish resume`; then the removal goes through.
    assert main(["publish", "resume", DOMAIN, "--db", store_url, *setup]) == EXIT_OK
    assert PublishJournal(store).get(run.id).state == "done"
    assert txt(world, at="primary") == []
    assert main(["host", "remove", DOMAIN, "--db", store_url, *setup]) == EXIT_OK
    assert HostedPolicies(store).get(DOMAIN) is None
    assert len(PublishJournal(store).runs(DOMAIN)) == 1  # the finished run counted


def test_force_before_the_wait_still_takes_the_record_first(
    world: DnsWorld, store: Store, store_url: str, setup: list[str]
) -> None:
    with store.engine.begin() as conn:  # the wait is not over
        conn.execute(
            update(hosted_domains)
            .where(hosted_domains.c.domain == DOMAIN)
            .values(remove_after=datetime.now(UTC) + timedelta(days=1))
        )
    assert main(["host", "remove", DOMAIN, "--db", store_url, *setup]) == EXIT_OPERATIONAL
    assert PublishJournal(store).runs(DOMAIN) == [] and txt(world, at="primary")
    assert main(["host", "remove", DOMAIN, "--force", "--db", store_url, *setup]) == EXIT_OK
    assert txt(world, at="primary") == [] and HostedPolicies(store).get(DOMAIN) is None
    (run,) = PublishJournal(store).runs(DOMAIN)
    assert [(s.kind, s.state) for s in run.steps] == [("remove-sts", "verified")]
