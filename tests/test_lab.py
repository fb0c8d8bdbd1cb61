"""The lab itself: the scenario table is sound, the world starts, two labs coexist, CLI lists it."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from stspilot.check.evaluate import PublishedStage
from stspilot.cli import main
from stspilot.findings import CATALOGUE
from stspilot.lab.scenarios import BY_DOMAIN, SCENARIOS, healthy
from stspilot.lab.world import Lab
from stspilot.probes.resolver import Resolver, ResolverConfig

# Every case the checker issue names must have a scenario (a tag in the domain name).
REQUIRED = (
    "enforce-ok", "testing-ok", "sts-absent", "txt-multiple", "txt-not-sts", "txt-bad-id",
    "txt-split", "txt-cname", "txt-extension", "fetch-nxdomain", "fetch-404", "fetch-redirect",
    "fetch-html", "fetch-type", "fetch-huge", "fetch-slow", "fetch-expired", "fetch-wrong-name",
    "fetch-untrusted", "fetch-no-tls", "crlf-ok", "text-prose", "text-no-mx", "mx-uncovered",
    "mx-unused", "mx-wildcard-deep", "mx-no-starttls", "mx-expired", "mx-self-signed",
    "mx-untrusted", "mx-wrong-name", "mx-tls-broken", "mx-no-banner", "mx-starttls-refused",
    "orphan-policy", "maxage-short", "maxage-long-testing", "tlsrpt-absent",
    "tlsrpt-bad-scheme", "tlsrpt-depends-on-mx", "chain-ok", "mx-chain-incomplete",
    "fetch-chain-incomplete",
)  # fmt: skip


def test_scenario_table_is_sound() -> None:
    assert len(BY_DOMAIN) == len(SCENARIOS), "domains must be unique"
    for sc in SCENARIOS:
        assert sc.expected <= CATALOGUE.keys(), (sc.domain, sc.expected - CATALOGUE.keys())
        assert sc.stage in {s.value for s in PublishedStage}, sc.domain
        assert sc.domain.endswith(".test") and "{d}" not in repr(sc)
    missing = [slug for slug in REQUIRED if f"{slug}.test" not in BY_DOMAIN]
    assert not missing


def test_healthy_bench_domains_share_hosts() -> None:
    a, b = healthy(1, mx_count=2), healthy(2, mx_count=2)
    assert a.domain != b.domain and a.shared and b.shared
    assert [mx.name for mx in a.mx] == ["mx1.d00001.bench.test", "mx2.d00001.bench.test"]
    assert a.policy is not None and "mx: mx2.d00001.bench.test\n" in a.policy


async def test_two_labs_at_once_use_separate_addresses() -> None:
    scenarios = [BY_DOMAIN["enforce-ok.test"], BY_DOMAIN["mx-expired.test"]]
    async with Lab(scenarios) as one, Lab(scenarios) as two:
        assert one.info.nameserver != two.info.nameserver
        for lab in (one, two):
            info = lab.info
            ports = {h.service.port for h in lab.https_hosts}
            assert ports == {info.https_port} and info.https_port > 1024
            assert {h.service.port for h in lab.smtp_hosts} == {info.smtp_port}
            resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port))
            found = await resolver.lookup_address("mx1.enforce-ok.test")
            assert found.addresses and found.addresses[0].startswith(
                info.nameserver.rsplit(".", 2)[0] + "."
            )
    assert one._info is None and two._info is None


async def test_lab_certificates_verify_with_the_lab_ca() -> None:
    async with Lab([BY_DOMAIN["enforce-ok.test"]]) as lab:
        info = lab.info
        context = ssl.create_default_context(cafile=str(info.ca_file))
        host = lab.https_hosts[0].service.address
        reader, writer = await asyncio.open_connection(
            host, info.https_port, ssl=context, server_hostname="mta-sts.enforce-ok.test"
        )
        writer.write(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
        writer.write(b"Host: mta-sts.enforce-ok.test\r\n\r\n")
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"max_age: 604800\n")


async def test_latency_is_applied() -> None:
    async with Lab([BY_DOMAIN["enforce-ok.test"]], dns_latency=0.05) as lab:
        info = lab.info
        resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await resolver.lookup_mx("enforce-ok.test")
        assert loop.time() - started >= 0.05


def test_cli_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "scenarios", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["domain"] for row in rows] == [sc.domain for sc in SCENARIOS]
    assert all(set(row) == {"domain", "summary", "stage", "expected"} for row in rows)


def test_cli_lab_up_prints_a_working_check_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import shlex
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "stspilot", "lab", "up", "enforce-ok", "mx-expired"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        command: list[str] = []
        for _ in range(20):
            line = proc.stdout.readline()
            if line.strip().startswith("stspilot check"):
                command = shlex.split(line)
                break
        assert command, "lab up printed no check command"
        monitor: list[list[str]] = []
        for _ in range(20):
            line = proc.stdout.readline()
            if line.strip().startswith("stspilot monitor"):
                monitor.append(shlex.split(line))
            if len(monitor) == 2:
                break
        assert main([*command[1:], "mx-expired.test"]) == 2  # the printed command works
        assert "mx.cert.expired" in capsys.readouterr().out
        # The printed monitor commands work too, without false alerts: the lab is all
        # loopback, which the monitor refuses unless --allow-private (printed) is given.
        add, run = monitor
        assert "--allow-private" in run
        db = ["--db", str(tmp_path / "m.db")]
        assert main([*add[1:], *db]) == 0
        assert main([*run[1:], *db]) == 0
        assert "checked 2, failed 0" in capsys.readouterr().out
        assert main(["monitor", "alerts", "enforce-ok.test", "--json", *db]) == 0
        assert json.loads(capsys.readouterr().out) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "lab stopped" in rest


async def test_lab_serves_dkim_key_records() -> None:
    from stspilot.lab import make_dkim_key
    from stspilot.lab.sample_reports import REPORTER_DOMAINS

    key = make_dkim_key(selector="s2026", bits=2048)
    async with Lab([healthy(1)], records=key.records(REPORTER_DOMAINS)) as lab:
        info = lab.info
        resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port))
        for domain in REPORTER_DOMAINS:
            found = await resolver.lookup_txt(f"s2026._domainkey.{domain}")
            [record] = found.records
            assert b"".join(record).decode() == key.record_value()
            assert len(record) > 1  # over 255 bytes: split into character-strings
        missing = await resolver.lookup_txt("lab._domainkey.google.com")
        assert missing.status.value == "nxdomain"
        await resolver.aclose()


@pytest.mark.parametrize(
    ("args", "suffix"), [([], ".json.gz"), (["--plain"], ".json"), (["--mail"], ".eml")]
)
def test_cli_lab_reports_writes_reports_ingest_stores(
    tmp_path: Path, args: list[str], suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "reports"
    assert main(["lab", "reports", str(folder), "-n", "12", "--domain", "example.org", *args]) == 0
    files = sorted(folder.iterdir())
    assert len(files) == 12 and all(f.name.endswith(suffix) for f in files)
    capsys.readouterr()
    db = str(tmp_path / "s.db")
    assert main(["ingest", str(folder), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new"] == 12
    # Dated up to yesterday: the default summary window sees them.
    assert main(["reports", "summary", "example.org", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"] == 12
