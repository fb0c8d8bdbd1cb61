"""End to end: lab scenarios on loopback + reports in the store, through ``stspilot rollout``.

The lab (real DNS, HTTPS and SMTP servers on 127.x addresses) runs on its own event loop in a
thread, because the CLI calls ``asyncio.run`` itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stspilot.cli import main
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.lab.world import LabInfo, start_lab
from stspilot.store import Store
from stspilot.store.models import NewReport
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport

pytestmark = [pytest.mark.db, pytest.mark.slow]

DOMAINS = (
    "testing-ok.test",
    "enforce-ok.test",
    "mx-expired.test",
    "sts-absent.test",
    "mode-none.test",
    "mx-uncovered.test",
)
ORGS = ("Google LLC", "Microsoft Corporation")


@pytest.fixture(scope="module")
def lab() -> Iterator[LabInfo]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="lab", daemon=True)
    thread.start()
    world = asyncio.run_coroutine_threadsafe(
        start_lab([BY_DOMAIN[d] for d in DOMAINS]), loop
    ).result(60)
    try:
        yield world.info
    finally:
        asyncio.run_coroutine_threadsafe(world.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def store_reports(
    url: str,
    domain: str,
    *,
    days: int = 7,
    per_day: int = 60,
    failures: dict[int, tuple[str, str, int]] | None = None,
    orgs: tuple[str, ...] = ORGS,
) -> None:
    """One report per organisation and day for the last ``days`` days; ``failures`` maps
    days-ago -> (result type, receiving MX, sessions), reported by the first organisation."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    items = []
    for back in range(1, days + 1):
        start = today - timedelta(days=back)
        for org in orgs:
            details: tuple[FailureDetail, ...] = ()
            if failures and back in failures and org == orgs[0]:
                rtype, mx, n = failures[back]
                details = (FailureDetail(rtype, n, "192.0.2.1", mx, None, "198.51.100.7"),)
            failed = sum(d.failed_session_count for d in details)
            policy = PolicyResult("sts", domain, ("version: STSv1",), (), per_day, failed, details)
            rid = f"{org}-{domain}-{start:%Y%m%d}"
            report = TlsReport(org, rid, start, start + timedelta(days=1), "tls@example", (policy,))
            items.append(NewReport(report, rid.encode(), "test", datetime.now(UTC)))
    with Store.open(url) as store:
        store.add_reports(items)


def run_json(
    lab: LabInfo, url: str, domain: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(
        ["rollout", domain, "--db", url, "--json", "--timeout", "20", *lab.check_args(), *extra]
    )
    out = capsys.readouterr().out
    return code, json.loads(out)


def gate(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in doc["gate"]}


def test_clean_testing_domain_is_ready_and_gets_the_enforce_policy(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(store_url, "testing-ok.test")
    code, doc = run_json(lab, store_url, "testing-ok.test", capsys)
    assert doc["schema"] == "stspilot.rollout/1"
    assert doc["stage"] == "testing"
    assert doc["ready_for_enforce"] is True, doc["gate"]
    assert code == 0
    (pub,) = doc["next_step"]["publications"]
    assert pub["mode"] == "enforce" and pub["max_age"] == 604800
    assert pub["mx"] == ["mx1.testing-ok.test", "mx2.testing-ok.test"]
    assert pub["id"] != "20240101T000000"
    assert f'"v=STSv1; id={pub["id"]}"' in pub["zone_lines"][1]
    assert doc["rollback"]["publications"][0]["mode"] == "testing"
    # the check was saved: a second run knows since when the domain is in testing
    code2, doc2 = run_json(lab, store_url, "testing-ok.test", capsys)
    assert code2 == 0
    assert doc2["since"] is not None and doc2["since_is_lower_bound"] is True


def test_failures_in_reports_mean_fixing_and_exit_2(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(
        store_url,
        "testing-ok.test",
        failures={2: ("certificate-expired", "mx2.testing-ok.test", 17)},
    )
    code, doc = run_json(lab, store_url, "testing-ok.test", capsys)
    assert (code, doc["stage"], doc["ready_for_enforce"]) == (2, "fixing", False)
    assert gate(doc)["reports-clean"] == "fail"
    what = doc["what_if"]
    assert what["refused_under_enforce"] == 17
    assert what["by_organization"] == [{"name": "Google LLC", "sessions": 17}]
    assert what["by_mx"] == [{"name": "mx2.testing-ok.test", "sessions": 17}]
    assert what["by_result_type"] == [{"name": "certificate-expired", "sessions": 17}]


@pytest.mark.parametrize(
    ("domain", "stage", "code", "failing"),
    [
        ("enforce-ok.test", "enforce", 0, set()),
        ("mx-expired.test", "enforce", 2, {"mx-tls"}),
        ("mx-uncovered.test", "enforce", 2, {"mx-covered"}),
        ("sts-absent.test", "reporting", 2, {"mx-covered", "policy-fetch"}),
    ],
)
def test_live_check_drives_the_gate(
    lab: LabInfo,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    stage: str,
    code: int,
    failing: set[str],
) -> None:
    store_reports(store_url, domain)
    got, doc = run_json(lab, store_url, domain, capsys)
    assert doc["stage"] == stage
    assert {n for n, v in gate(doc).items() if v == "fail"} == failing
    assert got == code


def test_reporting_domain_gets_a_testing_policy(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(store_url, "sts-absent.test")
    _, doc = run_json(lab, store_url, "sts-absent.test", capsys)
    (pub,) = doc["next_step"]["publications"]
    assert pub["mode"] == "testing" and pub["max_age"] == 86400
    assert pub["mx"] == ["mx1.sts-absent.test", "mx2.sts-absent.test"]


def test_no_reports_at_all(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run_json(lab, store_url, "enforce-ok.test", capsys)
    assert code == 2
    assert gate(doc)["report-volume"] == "fail" and gate(doc)["tlsrpt"] == "fail"


def test_policy_changed_without_id_bump_from_history(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(store_url, "enforce-ok.test")
    with Store.open(store_url) as store:  # an earlier check saw other policy text, same id
        store.save_check(
            domain="enforce-ok.test",
            observed_at=datetime.now(UTC) - timedelta(days=3),
            stage="enforce",
            mode="enforce",
            worst_severity=None,
            findings_count=0,
            policy_id="20240101T000000",
            policy_sha256="0" * 64,
            mx_set=["mx1.enforce-ok.test"],
            result={"policy": {"max_age": 1209600}},
        )
    code, doc = run_json(lab, store_url, "enforce-ok.test", capsys)
    assert "rollout.id-not-bumped" in [f["code"] for f in doc["findings"]]
    assert gate(doc) and all(v == "pass" for v in gate(doc).values())
    assert code == 2  # the gate passes, but an error finding needs action
    # the longest max_age ever served (two weeks, from history) bounds the decommission wait
    assert "14 days" in " ".join(doc["decommission"]["steps"])


def test_mode_none_is_winding_down(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(store_url, "mode-none.test")
    code, doc = run_json(lab, store_url, "mode-none.test", capsys)
    assert doc["stage"] == "winding-down"
    assert doc["next_step"]["title"] == "Finish removing MTA-STS"
    assert code in (0, 1)


def test_mx_migration_runbook(
    lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_reports(store_url, "enforce-ok.test")
    _, doc = run_json(
        lab,
        store_url,
        "enforce-ok.test",
        capsys,
        "--new-mx",
        "mx1.newprovider.test",
        "--new-mx",
        "mx2.newprovider.test",
    )
    plan = doc["mx_migration"]
    assert plan is not None
    both, final = plan["publications"]
    assert set(both["mx"]) == {
        "mx1.enforce-ok.test",
        "mx2.enforce-ok.test",
        "mx1.newprovider.test",
        "mx2.newprovider.test",
    }
    assert final["mx"] == ["mx1.newprovider.test", "mx2.newprovider.test"]


def test_text_output(lab: LabInfo, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store_reports(store_url, "testing-ok.test")
    capsys.readouterr()
    code = main(["rollout", "testing-ok.test", "--db", store_url, *lab.check_args()])
    out = capsys.readouterr().out
    assert code == 0
    for words in (
        "stage: testing",
        "READY for enforce",
        "Next step: Switch to enforce",
        "mode: enforce",
        "Rollback",
        "Decommission",
    ):
        assert words in out


@pytest.mark.parametrize(
    ("domain", "args", "code", "mx"),
    [
        (
            "testing-ok.test",
            ["--mode", "enforce"],
            0,
            ["mx1.testing-ok.test", "mx2.testing-ok.test"],
        ),
        ("mx-expired.test", [], 1, ["mx1.mx-expired.test", "mx2.mx-expired.test"]),
    ],
)
def test_generate_from_the_live_mx_set(
    lab: LabInfo,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    args: list[str],
    code: int,
    mx: list[str],
) -> None:
    capsys.readouterr()
    got = main(
        ["generate", domain, "--json", "--rua", "mailto:tls@reports.test", *lab.check_args(), *args]
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "stspilot.generate/1"
    assert doc["mx"] == mx
    assert doc["id"] != "20240101T000000"
    assert got == code
    if code == 1:
        assert [f["code"] for f in doc["findings"]] == ["generate.mx.probe-failed"]


def test_generate_keeps_the_published_rua(lab: LabInfo, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    main(["generate", "testing-ok.test", "--zone", *lab.check_args()])
    zone = capsys.readouterr().out
    assert '"v=TLSRPTv1; rua=mailto:tlsrpt@reports-provider.test"' in zone


def test_usage_errors(store_url: str) -> None:
    assert (
        main(["rollout", "example.com", "--db", store_url, "--days", "3", "--gate-days", "7"]) == 3
    )
    assert main(["generate", "example.com", "--no-probe"]) == 3
    assert (
        main(
            ["generate", "example.com", "--no-probe", "--mx", "mx.example.com", "--mode", "report"]
        )
        == 3
    )
