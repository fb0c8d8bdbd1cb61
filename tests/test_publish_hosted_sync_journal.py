"""The bulk ``publish hosted-sync`` is journaled like every other publication: each domain it
changes gets its own ``hosted-sync`` run, written before anything changes; a failure (a
secondary that stops following) or a SIGKILL at any phase leaves the runs where they stopped,
and ``publish resume DOMAIN`` finishes each. Knot primary + secondary serving the delegation
zone and the customers' zones, the HTTPS policy host serving the hosted store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubweb_support import CUSTOMERS, DELEGATION, PubWorld, pub_world
from stspilot.cli import EXIT_OK, EXIT_OPERATIONAL, main
from stspilot.store import Store
from stspilot.store.hosting import HostedPolicies
from stspilot.store.journal import PublishJournal

pytestmark = [pytest.mark.slow, pytest.mark.db]


@pytest.fixture
def pw(tmp_path: Path, store: Store) -> Iterator[PubWorld]:
    yield from pub_world(tmp_path, store)


def net(pw: PubWorld) -> list[str]:
    return [
        "--config", str(pw.config), "--nameserver", f"{pw.check.nameserver}:{pw.check.dns_port}",
        "--ca-file", str(pw.check.ca_file), "--port-map", f"443={pw.check.port_map[443]}",
    ]  # fmt: skip


def sync(pw: PubWorld, store_url: str) -> int:
    args = ["publish", "hosted-sync", "--zone", DELEGATION, "--yes", "--db", store_url]
    return main([*args, *net(pw)])


def resume(pw: PubWorld, store_url: str, domain: str) -> int:
    return main(["publish", "resume", domain, "--db", store_url, *net(pw)])


def wanted(store: Store) -> dict[str, str]:
    return {h.domain: h.sts_txt_value for h in HostedPolicies(store).list_domains()}


def test_each_domain_synced_is_a_journaled_run(
    pw: PubWorld, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert all(pw.txt(d) == [] for d in CUSTOMERS)
    assert sync(pw, store_url) == EXIT_OK, capsys.readouterr().err
    for domain, value in wanted(store).items():
        assert pw.txt(domain) == [value]
        (run,) = PublishJournal(store).runs(domain)
        assert run.action == "hosted-sync" and run.state == "done"
        assert run.destination == "hosted-delegation" and run.actor.endswith("(cli)")
        policy, sts = run.steps
        assert (policy.kind, policy.state) == ("policy", "verified")
        assert (sts.kind, sts.state, sts.target["value"]) == ("sts", "verified", value)
        assert policy.verified_at is not None and sts.intended_at is not None
        assert policy.verified_at <= sts.intended_at  # the policy fetched before its id
    assert "journal runs" in capsys.readouterr().out
    # Nothing differs now: nothing journaled, nothing written.
    assert sync(pw, store_url) == EXIT_OK
    assert all(len(PublishJournal(store).runs(d)) == 1 for d in CUSTOMERS)


def test_a_failed_sync_is_finished_by_publish_resume(
    pw: PubWorld, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pw.config.write_text(pw.config.read_text().replace("verify_timeout = 20", "verify_timeout = 2"))
    pw.secondary.pause()  # written at the primary, never shown by the secondary: not verified
    try:
        code = sync(pw, store_url)
    finally:
        pw.secondary.resume()
    err = capsys.readouterr().err
    assert code == EXIT_OPERATIONAL, err
    assert "stspilot publish resume DOMAIN" in err
    for domain in CUSTOMERS:
        (run,) = PublishJournal(store).runs(domain)
        assert run.state == "failed" and "resume" in (run.error or "")
        assert [s.state for s in run.steps] == ["verified", "failed"]
    for domain, value in wanted(store).items():
        assert resume(pw, store_url, domain) == EXIT_OK, capsys.readouterr().err
        (run,) = PublishJournal(store).runs(domain)  # the same run, finished
        assert run.state == "done" and [s.state for s in run.steps] == ["verified", "verified"]
        assert pw.txt(domain) == [value]


CHILD = """
import asyncio, json, os, signal, sys
from pathlib import Path
from stspilot.check.run import CheckOptions, Probes
from stspilot.publish.config import load_config
from stspilot.publish.hosted import delegation_zone, sync_delegation
from stspilot.publish.rfc2136 import Rfc2136Provider
from stspilot.publish.session import utc_now
from stspilot.publish.verify import NameServer, VerifyOptions, authoritative_servers
from stspilot.store import Store

spec = json.loads(sys.argv[1])

def after(phase):
    if phase == spec["crash"]:
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    zone = delegation_zone(load_config(Path(spec["config"])), spec["zone"])
    rfc = zone.rfc2136()
    check = CheckOptions(nameserver=spec["nameserver"], dns_port=spec["dns_port"],
                         ca_file=Path(spec["ca_file"]), port_map={443: spec["https"]})
    with Store.open(spec["db"]) as store:
        async with Probes(check) as probes:
            primary = NameServer("primary", rfc.server, rfc.port)
            servers = await authoritative_servers(zone.zone, primary=primary, port=rfc.port)
            await sync_delegation(
                store, Rfc2136Provider(rfc), servers, zone=zone.zone, clock=utc_now,
                fetcher=probes.fetcher, verify=VerifyOptions(timeout=20, interval=0.05),
                actor="child", after_phase=after)

asyncio.run(main())
"""


# The id step's state when the publisher dies right after each phase is journaled.
AFTER = {"journaled": "planned", "intended": "intended", "done": "done"}


@pytest.mark.parametrize("crash", list(AFTER))
def test_a_sync_killed_at_any_phase_resumes(
    pw: PubWorld, store: Store, store_url: str, crash: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {
        "crash": crash, "config": str(pw.config), "zone": DELEGATION, "db": store_url,
        "nameserver": pw.check.nameserver, "dns_port": pw.check.dns_port,
        "ca_file": str(pw.check.ca_file), "https": pw.check.port_map[443],
    }  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, timeout=120
    )
    assert child.returncode == -9, child.stderr.decode()  # killed by its own SIGKILL
    for domain in CUSTOMERS:
        (run,) = PublishJournal(store).runs(domain)
        assert run.state == "running" and run.actor == "child"  # cut short, as journaled
        assert [s.state for s in run.steps] == ["verified", AFTER[crash]]
    for domain, value in wanted(store).items():
        assert resume(pw, store_url, domain) == EXIT_OK, capsys.readouterr().err
        (run,) = PublishJournal(store).runs(domain)
        assert run.state == "done" and [s.state for s in run.steps] == ["verified", "verified"]
        assert pw.txt(domain) == [value]
