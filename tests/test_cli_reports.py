"""``stspilot reports ...`` through ``stspilot.cli.main`` against a real store."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stspilot.cli import main
from stspilot.lab import LabDkimKey, make_dkim_key
from stspilot.lab.dkim_keys import KeyServer
from stspilot.lab.sample_reports import REPORTER_DOMAINS, generate_reports, to_email
from stspilot.store import NewReport, Store
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport

pytestmark = pytest.mark.db

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def report(rid: str, days_ago: int, *, org: str = "Google Inc.", failed: int = 0) -> TlsReport:
    start = TODAY - timedelta(days=days_ago)
    details = (
        (FailureDetail("certificate-expired", failed, "192.0.2.1", "mx1.example.com"),)
        if failed
        else ()
    )
    return TlsReport(
        organization_name=org,
        report_id=rid,
        start=start,
        end=start + timedelta(seconds=86399),
        policies=(
            PolicyResult(
                "sts", "example.com", ("mode: testing",), ("mx1.example.com",), 90, failed, details
            ),
        ),
    )


def report_json(rid: str) -> bytes:
    """An RFC 8460 §4 report as a sender would mail it."""
    day = TODAY - timedelta(days=2)
    return json.dumps(
        {
            "organization-name": "Mail.ru",
            "date-range": {
                "start-datetime": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end-datetime": (day + timedelta(seconds=86399)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "contact-info": "tlsrpt@corp.mail.ru",
            "report-id": rid,
            "policies": [
                {
                    "policy": {"policy-type": "no-policy-found", "policy-domain": "example.com"},
                    "summary": {
                        "total-successful-session-count": 7,
                        "total-failure-session-count": 0,
                    },
                }
            ],
        }
    ).encode()


@pytest.fixture
def filled(store_url: str) -> str:
    with Store.open(store_url) as store:
        store.add_reports(
            [
                NewReport(report("a", 3), b"a", "file:a", TODAY),
                NewReport(report("b", 5, failed=10), b"b", "file:b", TODAY),
                NewReport(report("c", 5, org="Microsoft"), b"c", "file:c", TODAY),
                NewReport(report("old", 40, failed=99), b"old", "file:old", TODAY),
            ]
        )
    return store_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_json(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reports", "summary", "example.com", "--db", filled, "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["reports"], data["successful"], data["failed"]) == (3, 270, 10)
    assert len(data["daily"]) == 14  # the 40-day-old report is outside --days 14
    assert data["would_refuse_under_enforce"]["mx"][0]["key"] == "mx1.example.com"
    code, out, _ = run(capsys, "reports", "summary", "--days", "60", "--db", filled, "--json")
    assert json.loads(out)["failed"] == 109 and len(json.loads(out)["daily"]) == 60


def test_summary_csv(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reports", "summary", "example.com", "--db", filled, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert sum(1 for r in rows if r["section"] == "day") == 14
    assert {r["key"] for r in rows if r["section"] == "sender"} == {"Google Inc.", "Microsoft"}


def test_summary_text(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reports", "summary", "example.com", "--db", filled)
    assert code == 0
    assert "280 sessions in 3 reports from 2 sending organisations" in out
    assert "Failures by result type: likely cause and fix" in out and "certificate-expired" in out
    assert "would have been refused" in out


def test_summary_of_a_domain_without_reports(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "reports", "summary", "nothing.example", "--db", filled)
    assert code == 0 and "no TLS-RPT reports" in out and "_smtp._tls" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("reports", "summary", "--json", "--csv"), 3),  # usage
        (("reports", "summary", "--days", "0"), 3),
        (("reports", "quarantine", "--raw"), 3),
        (("reports", "quarantine", "--show", "12345"), 4),  # operational: no such entry
        (("reports", "retry", "12345"), 4),
    ],
)
def test_errors_have_fixed_exit_codes(
    filled: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: int
) -> None:
    code, _out, _err = run(capsys, *args, "--db", filled)
    assert code == expected


def test_unsupported_database_is_operational(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "reports", "list", "--db", "mysql://localhost/x")
    assert code == 4 and "unsupported database" in err


def test_list(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reports", "list", "example.com", "--db", filled, "--json")
    ids = [r["report_id"] for r in json.loads(out)]  # --json: one document
    assert code == 0 and ids[0] == "a" and ids[-1] == "old" and len(ids) == 4
    code, out, _ = run(capsys, "reports", "list", "example.com", "--db", filled, "--jsonl")
    assert [json.loads(line)["report_id"] for line in out.splitlines()] == ids
    code, out, _ = run(capsys, "reports", "list", "--days", "4", "--db", filled, "--json")
    assert [r["report_id"] for r in json.loads(out)] == ["a"]
    code, _, err = run(capsys, "reports", "list", "--db", filled, "--json", "--jsonl")
    assert code == 3 and err.count("\n") == 1
    code, out, _ = run(capsys, "reports", "list", "--db", filled)
    assert code == 0 and "Microsoft" in out


def test_quarantine_then_retry(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    good_now = report_json("fixed-by-new-parser@mail.ru")
    with Store.open(store_url) as store:
        first = store.quarantine(
            good_now,
            origin="imap:INBOX/1",
            code="report.old-bug",
            reason="the old parser choked",
            received_at=TODAY,
        )
        still_bad = store.quarantine(
            b"\x00 not a report", origin="file:junk", code="x", reason="junk", received_at=TODAY
        )
    code, out, _ = run(capsys, "reports", "quarantine", "--db", store_url, "--json")
    assert [i["id"] for i in json.loads(out)] == [first.id, still_bad.id]
    code, out, _ = run(capsys, "reports", "quarantine", "--show", str(first.id), "--db", store_url)
    assert "imap:INBOX/1" in out and "fixed-by-new-parser" in out
    main(["reports", "quarantine", "--show", str(first.id), "--raw", "--db", store_url])
    assert capsys.readouterr().out.encode() == good_now

    code, out, _ = run(capsys, "reports", "retry", "--db", store_url, "--json")
    lines = {r["id"]: r for r in json.loads(out)}
    assert code == 1  # one entry still fails
    assert lines[first.id]["resolved"] and not lines[still_bad.id]["resolved"]
    with Store.open(store_url) as store:
        assert [r.report_id for r in store.list_reports()] == ["fixed-by-new-parser@mail.ru"]
        assert [q.id for q in store.list_quarantine()] == [still_bad.id]
        resolved = store.get_quarantine(first.id)
        assert resolved is not None and resolved.resolved_report_pk is not None
        assert store.get_quarantine(still_bad.id).code != "x"  # type: ignore[union-attr]
    code, out, _ = run(capsys, "reports", "retry", str(first.id), "--db", store_url)
    assert code == 0 and "already resolved" in out
    code, out, _ = run(capsys, "reports", "quarantine", "--all", "--db", store_url, "--json")
    notes = {i["id"]: i["note"] for i in json.loads(out)}
    assert notes == {first.id: "retried: 1 new, 0 duplicate", still_bad.id: None}


def test_quarantine_listing_keeps_codes_and_paths_whole(
    store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = (
        "/var/spool/tlsrpt/incoming/2026/11/google.com!example.com!1763769600!1763855999.json.gz"
    )
    with Store.open(store_url) as store:
        store.quarantine(
            b"\x1f\x8b junk",
            origin=origin,
            code="report.limit.compression-ratio",
            reason="gzip expands over 250:1 (decompression bomb?)",
            received_at=TODAY,
        )
    monkeypatch.setenv("COLUMNS", "80")  # as in a pipe: a block per entry
    code, out, _ = run(capsys, "reports", "quarantine", "--db", store_url)
    assert code == 0
    assert "report.limit.compression-ratio" in out and origin in out
    assert "decompression bomb?" in out and "┃" not in out
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the table
    code, out, _ = run(capsys, "reports", "quarantine", "--db", store_url)
    assert code == 0 and "┃ code" in out and "report.limit.compression-ratio" in out


def test_db_option_beats_the_environment(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STSPILOT_DATABASE_URL", filled)
    code, out, _ = run(capsys, "reports", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 4
    other = tmp_path / "other.sqlite3"  # a bare path is a SQLite file
    code, out, err = run(capsys, "reports", "list", "--json", "--db", str(other))
    # A read command does not create an empty store: it says there is none.
    assert code == 4 and out == "" and not other.exists()
    assert err == f"stspilot: no store at {other}: nothing has been stored there yet " + (
        "(ingest, receive, serve and monitor add create it)\n"
    )


# --- DKIM: ingest --verify-dkim, then the authenticity line of the summary ----------------------


@pytest.fixture(scope="module")
def dkim_key() -> LabDkimKey:
    return make_dkim_key()


def signed_folder(folder: Path, key: LabDkimKey) -> dict[str, str]:
    """Lab report mails from the last days: signed, tampered (one body byte), unsigned and
    with the lab's look-alike signature; returns the expected result per report-id."""
    start = TODAY - timedelta(days=6)
    reports = generate_reports(12, start=start)
    expected = {}
    folder.mkdir()
    for i, r in enumerate(reports):
        raw = to_email(r, dkim_key=key)
        if i in (3, 7):
            at = raw.index(b"aggregate TLS report")
            raw, result = raw[:at] + b"A" + raw[at + 1 :], "fail"
        elif i == 5:
            raw, result = raw[raw.index(b"Content-Type:") :], "none"
        elif i == 9:
            raw, result = to_email(r), "fail"
        else:
            result = "pass"
        (folder / f"{i:03d}.eml").write_bytes(raw)
        expected[r["report-id"]] = result
    return expected


@pytest.mark.parametrize("workers", [1, 2])
def test_ingest_verify_dkim_then_summary(
    store_url: str,
    tmp_path: Path,
    dkim_key: LabDkimKey,
    capsys: pytest.CaptureFixture[str],
    workers: int,
) -> None:
    expected = signed_folder(tmp_path / "mail", dkim_key)
    with KeyServer(dkim_key.records(REPORTER_DOMAINS)) as dns:
        code, out, _ = run(
            capsys, "ingest", str(tmp_path / "mail"), "--db", store_url, "--json",
            "--workers", str(workers), "--verify-dkim", "--nameserver", dns.nameserver,
        )  # fmt: skip
        # One question per key and process: 4 reporter keys, `workers` processes.
        assert 1 <= dns.queries <= 4 * workers
    assert code == 0 and json.loads(out)["new"] == 12

    with Store.open(store_url) as store:
        listed = store.list_reports(limit=100)
        assert len(listed) == 12
        for item in listed:
            stored = store.get_report(item.pk)
            assert stored is not None and stored.envelope is not None
            dkim = stored.envelope["dkim"]
            want = expected[item.report_id]
            assert dkim["result"] == want, item.report_id
            codes = {d.code for d in stored.deviations}
            assert ("mail.dkim.fail" in codes) is (want == "fail")
            if want != "none":
                assert dkim["selector"] == "lab" and dkim["aligned"] is True

    code, out, _ = run(capsys, "reports", "summary", "--db", store_url, "--json")
    data = json.loads(out)
    assert code == 0 and data["reports"] >= 12  # counted per policy domain
    assert data["authenticity"] == {
        "mailed": 12, "verified": 8, "failed": 3, "unverifiable": 0, "unsigned": 1,
        "unchecked": 0,
        "posted": 0,
        "imported": 0,
    }  # fmt: skip
    per_org = {a["organization"]: a for a in data["authenticity_by_sender"]}
    assert sum(a["failed"] for a in per_org.values()) == 3
    assert sum(a["mailed"] for a in per_org.values()) == 12
    assert any("8 verified, 3 failed, 0 unverifiable, 1 unsigned" in x for x in data["lines"])

    code, out, _ = run(capsys, "reports", "summary", "--db", store_url, "--csv")
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["section"] == "authenticity"]
    assert [(r["reports"], r["verified"], r["failed"], r["unsigned"]) for r in rows] == [
        ("12", "8", "3", "1")
    ]
    code, out, _ = run(capsys, "reports", "summary", "--db", store_url)
    assert "Authenticity of mailed reports" in out


def test_ingest_without_verify_dkim_counts_unchecked(
    store_url: str, tmp_path: Path, dkim_key: LabDkimKey, capsys: pytest.CaptureFixture[str]
) -> None:
    signed_folder(tmp_path / "mail", dkim_key)
    code, _, _ = run(capsys, "ingest", str(tmp_path / "mail"), "--db", store_url, "--json")
    assert code == 0
    with Store.open(store_url) as store:
        for item in store.list_reports(limit=100):
            stored = store.get_report(item.pk)
            assert stored is not None and stored.envelope is not None
            assert "dkim" not in stored.envelope
    code, out, _ = run(capsys, "reports", "summary", "--db", store_url, "--json")
    assert json.loads(out)["authenticity"] == {
        "mailed": 12, "verified": 0, "failed": 0, "unverifiable": 0, "unsigned": 0,
        "unchecked": 12,
        "posted": 0,
        "imported": 0,
    }  # fmt: skip


def test_summary_of_files_has_no_mailed_reports(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "reports", "summary", "--db", filled, "--json")
    assert code == 0 and json.loads(out)["authenticity"]["mailed"] == 0


def test_verify_dkim_with_dns_down_is_unverifiable(
    store_url: str, tmp_path: Path, dkim_key: LabDkimKey, capsys: pytest.CaptureFixture[str]
) -> None:
    signed_folder(tmp_path / "mail", dkim_key)
    started = time.monotonic()
    code, _, _ = run(
        capsys, "ingest", str(tmp_path / "mail"), "--db", store_url, "--workers", "1",
        "--verify-dkim", "--nameserver", "127.0.0.1:9", "--dkim-timeout", "0.5",
    )  # fmt: skip
    assert code == 0 and time.monotonic() - started < 30
    code, out, _ = run(capsys, "reports", "summary", "--db", store_url, "--json")
    auth = json.loads(out)["authenticity"]
    # dkimpy fetches the key first: without it even a tampered body is only unverifiable.
    assert (auth["unverifiable"], auth["failed"], auth["unsigned"]) == (11, 0, 1)


def test_bad_nameserver_is_a_usage_error(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        capsys, "ingest", ".", "--db", store_url, "--verify-dkim", "--nameserver", "dns.example"
    )
    assert code == 3


def test_retry_jsonl_streams_one_line_per_entry(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(store_url) as store:
        for i in range(3):
            store.quarantine(
                b"junk %d" % i, origin=f"file:{i}", code="x", reason="junk", received_at=TODAY
            )
    code, out, _ = run(capsys, "reports", "retry", "--db", store_url, "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(lines) == 3 and all(line["still_failing"] for line in lines)


@pytest.mark.parametrize("gzipped", [False, True])
def test_ingest_reads_standard_input(
    store_url: str,
    gzipped: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gzip

    raw = report_json("from-stdin@mail.ru")
    data = gzip.compress(raw) if gzipped else raw
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(capsys, "ingest", "-", "--db", store_url, "--json")
    assert code == 0 and json.loads(out) == {
        "new": 1,
        "duplicate": 0,
        "quarantined": 0,
        "errors": 0,
    }
    with Store.open(store_url) as store:
        assert [r.report_id for r in store.list_reports()] == ["from-stdin@mail.ru"]


def test_ingest_reads_an_mbox_on_standard_input(
    store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mails = [to_email(r) for r in generate_reports(3, seed=7)]
    mbox = b"".join(
        b"From reporter@example.net Thu Jan  1 00:00:00 2026\n" + m + b"\n" for m in mails
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(mbox)))
    code, out, _ = run(capsys, "ingest", "-", "--db", store_url)
    assert code == 0 and out.startswith("3 new")


def test_a_domain_that_is_no_name_is_a_usage_error(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "reports", "list", "192.0.2.1", "--db", store_url)
    assert code == 3 and "IP address" in err
    Store.open(store_url).close()  # read commands do not create a store: make one
    code, _, _ = run(capsys, "reports", "list", "Example.COM.", "--db", store_url, "--json")
    assert code == 0
