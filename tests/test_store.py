"""The store API on SQLite (default) and PostgreSQL (``STSPILOT_TEST_DATABASE_URL``)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from stspilot.errors import ReportError, StoreError
from stspilot.store import NewQuarantine, NewReport, Store
from stspilot.store.dashboard import DashboardReads
from stspilot.tlsrpt.reports import Deviation, FailureDetail, PolicyResult, TlsReport

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_report(
    rid: str,
    *,
    org: str = "Google Inc.",
    day: int = 0,
    domain: str = "example.com",
    ok: int = 100,
    failures: tuple[tuple[str, int, str, str], ...] = (),
) -> TlsReport:
    """A one-policy report; ``failures`` are (result type, count, sending IP, receiving MX)."""
    details = tuple(
        FailureDetail(rt, n, sending_mta_ip=ip, receiving_mx_hostname=mx)
        for rt, n, ip, mx in failures
    )
    start = T0 + timedelta(days=day)
    policy = PolicyResult(
        policy_type="sts",
        policy_domain=domain,
        policy_string=("version: STSv1", "mode: testing", "mx: mx1.example.com", "max_age: 86400"),
        mx_host=("mx1.example.com",),
        successful_sessions=ok,
        failed_sessions=sum(n for _rt, n, _ip, _mx in failures),
        failure_details=details,
    )
    return TlsReport(
        organization_name=org,
        report_id=rid,
        start=start,
        end=start + timedelta(days=1) - timedelta(seconds=1),
        contact_info="smtp-tls-reporting@google.com",
        policies=(policy,),
    )


def new(report: TlsReport, raw: bytes | None = None, **kw: object) -> NewReport:
    raw = raw if raw is not None else f"raw {report.organization_name} {report.report_id}".encode()
    return NewReport(report, raw, kw.pop("origin", "file:test"), NOW, **kw)  # type: ignore[arg-type]


def test_add_then_readd_is_a_noop(store: Store) -> None:
    items = [new(make_report(f"r{i}")) for i in range(3)]
    first = store.add_reports(items)
    assert [r.status for r in first] == ["new"] * 3
    again = store.add_reports(items)
    assert [r.status for r in again] == ["duplicate"] * 3
    assert [r.report_pk for r in again] == [r.report_pk for r in first]
    assert store.count_reports() == 3


@pytest.mark.parametrize(
    ("second", "dedup_raw", "expected"),
    [
        # same (organisation, report-id) from other bytes (another rua, a retry): duplicate
        (lambda: new(make_report("a"), raw=b"other bytes"), True, "duplicate"),
        # same raw bytes whatever they parse to now (a parser fix changed the id): duplicate
        (lambda: new(make_report("b"), raw=b"raw Google Inc. a"), True, "duplicate"),
        # ... unless re-trying a unit whose other reports were stored already
        (lambda: new(make_report("b"), raw=b"raw Google Inc. a"), False, "new"),
        # same report-id from another organisation: a different report
        (lambda: new(make_report("a", org="Microsoft")), True, "new"),
    ],
)
def test_dedup_rules(store: Store, second, dedup_raw: bool, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert store.add_report(new(make_report("a"))).status == "new"
    result = store.add_reports([second()], dedup_raw=dedup_raw)[0]
    assert result.status == expected
    assert store.count_reports() == (2 if expected == "new" else 1)


def test_duplicates_inside_one_batch_point_at_the_first(store: Store) -> None:
    a = new(make_report("a"))
    results = store.add_reports([a, new(make_report("b")), new(make_report("a"), raw=b"x")])
    assert [r.status for r in results] == ["new", "new", "duplicate"]
    assert results[2].report_pk == results[0].report_pk


def test_one_raw_unit_with_two_reports_keeps_both(store: Store) -> None:
    mail = b"From: reports@example.net\n\ntwo attachments"
    results = store.add_reports([new(make_report("a"), raw=mail), new(make_report("b"), raw=mail)])
    assert [r.status for r in results] == ["new", "new"]
    assert results[0].sha256 == results[1].sha256
    assert store.seen_sha256(results[0].sha256)
    assert store.report_raw(results[1].report_pk) == mail
    # Again (a re-run): each report is a duplicate of itself, not of the unit's first report.
    again = store.add_reports([new(make_report("a"), raw=mail), new(make_report("b"), raw=mail)])
    assert [(r.status, r.report_pk) for r in again] == [
        ("duplicate", results[0].report_pk),
        ("duplicate", results[1].report_pk),
    ]
    # The same report in other bytes (another rua copy) is a duplicate by its identity.
    (other,) = store.add_reports([new(make_report("b"), raw=b"another copy")])
    assert (other.status, other.report_pk) == ("duplicate", results[1].report_pk)


def test_round_trip_keeps_every_field(store: Store) -> None:
    report = make_report(
        "rt", failures=(("certificate-expired", 3, "192.0.2.1", "mx1.example.com"),)
    )
    envelope = {"tls_report_domain": "example.com", "dkim_signed": True, "date": NOW}
    deviation = Deviation("submitter.mismatch", "/contact-info", "submitter differs")
    pk = store.add_report(new(report, envelope=envelope, deviations=(deviation,))).report_pk
    stored = store.get_report(pk)
    assert stored is not None
    assert stored.report == report
    assert stored.envelope == {**envelope, "date": NOW.isoformat()}
    assert stored.deviations == (deviation,)
    assert stored.received_at == NOW and stored.origin == "file:test"
    assert store.get_report(pk + 1000) is None


def test_envelope_may_be_a_dataclass(store: Store) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Envelope:
        subject: str
        dkim_domains: tuple[str, ...]

    pk = store.add_report(new(make_report("e"), envelope=Envelope("Report", ("google.com",))))
    stored = store.get_report(pk.report_pk)
    assert stored is not None and stored.envelope == {
        "subject": "Report",
        "dkim_domains": ["google.com"],
    }


def test_hostile_values_are_clipped_or_refused(store: Store) -> None:
    long_mx = "a" * 5000 + ".example.com"
    report = make_report("h", failures=(("validation-failure", 1, "192.0.2.9", long_mx),))
    pk = store.add_report(new(report)).report_pk
    stored = store.get_report(pk)
    assert stored is not None
    mx = stored.report.policies[0].failure_details[0].receiving_mx_hostname
    assert mx is not None and len(mx) == 255
    with pytest.raises(ReportError) as info:
        store.add_report(new(make_report("x" * 600)))
    assert info.value.code == "report.identity.too-long"


def test_mx_names_are_normalised_for_grouping(store: Store) -> None:
    store.add_report(
        new(
            make_report("n", failures=(("validation-failure", 2, "192.0.2.1", "MX1.Example.COM."),))
        )
    )
    rows = store.failures_by_mx("example.com")
    assert [(r.key, r.sessions) for r in rows] == [("mx1.example.com", 2)]


def test_ingest_batch_is_one_transaction(store: Store) -> None:
    ok = NewQuarantine(b"not json", "file:bad", "report.json.invalid", "bad", NOW)
    result = store.ingest_batch([new(make_report("a"))], [ok])
    assert [r.status for r in result.reports] == ["new"]
    assert [q.status for q in result.quarantined] == ["new"]
    # A failure anywhere in the batch (a naive time is refused) leaves nothing behind.
    broken = NewQuarantine(b"other", "file:bad2", "x", "y", datetime(2026, 1, 1))
    with pytest.raises(StoreError):
        store.ingest_batch([new(make_report("b"))], [broken])
    assert store.count_reports() == 1
    assert len(store.list_quarantine()) == 1


def test_quarantine_lifecycle(store: Store) -> None:
    first = store.quarantine(
        b"\x1f\x8bbroken",
        origin="imap:INBOX/7",
        code="report.gzip",
        reason="truncated",
        received_at=NOW,
    )
    again = store.quarantine(
        b"\x1f\x8bbroken",
        origin="imap:INBOX/8",
        code="report.gzip",
        reason="truncated",
        received_at=NOW,
    )
    other = store.quarantine(
        b"{", origin="f", code="report.json.invalid", reason="eof", received_at=NOW
    )
    assert (first.status, again.status, other.status) == ("new", "duplicate", "new")
    assert again.id == first.id
    assert store.quarantine_raw(first.id) == b"\x1f\x8bbroken"
    items = store.list_quarantine()
    assert [(i.id, i.origin, i.code, i.size) for i in items] == [
        (first.id, "imap:INBOX/7", "report.gzip", 8),
        (other.id, "f", "report.json.invalid", 1),
    ]
    pk = store.add_report(new(make_report("fixed"))).report_pk
    store.resolve_quarantine(first.id, report_pk=pk, note="parsed after fix", resolved_at=NOW)
    assert [i.id for i in store.list_quarantine()] == [other.id]
    resolved = [i for i in store.list_quarantine(include_resolved=True) if i.resolved]
    assert [(i.id, i.resolved_report_pk, i.note, i.resolved_at) for i in resolved] == [
        (first.id, pk, "parsed after fix", NOW)
    ]
    store.update_quarantine_reason(other.id, code="report.json.depth", reason="too deep")
    item = store.get_quarantine(other.id)
    assert item is not None and (item.code, item.reason) == ("report.json.depth", "too deep")
    with pytest.raises(StoreError):
        store.resolve_quarantine(9999, report_pk=None, note="")
    with pytest.raises(StoreError):
        store.quarantine_raw(9999)
    assert store.get_quarantine(9999) is None


def test_list_reports_filters_and_pages(store: Store) -> None:
    store.add_reports(
        [
            new(make_report("a", day=0)),
            new(make_report("b", day=1, domain="other.org")),
            new(make_report("c", day=2)),
            new(make_report("d", day=3)),
        ]
    )
    assert [r.report_id for r in store.list_reports()] == ["d", "c", "b", "a"]
    assert [r.report_id for r in store.list_reports("example.com")] == ["d", "c", "a"]
    window = store.list_reports(since=T0 + timedelta(days=1), until=date(2026, 11, 4))
    assert [r.report_id for r in window] == ["c", "b"]
    assert [r.report_id for r in store.list_reports(limit=2, offset=1)] == ["c", "b"]
    head = store.list_reports("other.org")[0]
    assert head.policy_domains == ("other.org",) and head.successful_sessions == 100


def _aggregate_world(store: Store) -> None:
    store.add_reports(
        [
            new(
                make_report(
                    "g0",
                    day=0,
                    ok=90,
                    failures=(("certificate-expired", 10, "192.0.2.1", "mx1.example.com"),),
                )
            ),
            new(make_report("g1", day=1, ok=100)),
            new(
                make_report(
                    "m1",
                    org="Microsoft",
                    day=1,
                    ok=50,
                    failures=(
                        ("validation-failure", 4, "198.51.100.7", "mx2.example.com"),
                        ("certificate-expired", 1, "198.51.100.7", "mx1.example.com"),
                    ),
                )
            ),
            new(
                make_report(
                    "m9",
                    org="Microsoft",
                    day=9,
                    ok=5,
                    failures=(("starttls-not-supported", 5, "198.51.100.7", "mx3.example.com"),),
                )
            ),
            new(
                make_report(
                    "o1",
                    day=1,
                    domain="other.org",
                    ok=7,
                    failures=(("sts-policy-fetch-error", 7, "192.0.2.1", "mx.other.org"),),
                )
            ),
        ]
    )


def test_aggregates_by_day_and_dimension(store: Store) -> None:
    _aggregate_world(store)
    window = {"since": T0, "until": T0 + timedelta(days=2)}
    daily = store.daily_totals("example.com", **window)
    assert [(d.day.day, d.reports, d.successful, d.failed) for d in daily] == [
        (1, 1, 90, 10),
        (2, 2, 150, 5),
    ]
    by_type = store.failures_by_result_type("example.com", **window)
    assert [(f.result_type, f.sessions) for f in by_type] == [
        ("certificate-expired", 11),
        ("validation-failure", 4),
    ]
    by_mx = store.failures_by_mx("example.com", **window)
    assert [(f.key, f.result_type, f.sessions) for f in by_mx] == [
        ("mx1.example.com", "certificate-expired", 11),
        ("mx2.example.com", "validation-failure", 4),
    ]
    by_org = store.failures_by_organization("example.com", **window)
    assert [(f.key, f.sessions) for f in by_org] == [
        ("Google Inc.", 10),
        ("Microsoft", 4),
        ("Microsoft", 1),
    ]
    by_ip = store.failures_by_sending_ip(None, **window)
    assert {(f.policy_domain, f.key, f.sessions) for f in by_ip} == {
        ("example.com", "192.0.2.1", 10),
        ("example.com", "198.51.100.7", 4),
        ("example.com", "198.51.100.7", 1),
        ("other.org", "192.0.2.1", 7),
    }
    senders = store.sender_totals("example.com", **window)
    assert [(s.organization_name, s.reports, s.successful, s.failed) for s in senders] == [
        ("Google Inc.", 2, 190, 10),
        ("Microsoft", 1, 50, 5),
    ]
    everything = store.report_aggregates(None, since=T0, until=T0 + timedelta(days=30))
    assert sum(d.failed for d in everything.daily) == 27
    assert everything.since == T0.date() and everything.until == date(2026, 12, 1)


@pytest.mark.parametrize(
    ("since", "until", "days"),
    [
        (T0, T0 + timedelta(days=1), [1]),  # [since, until): midnight excludes the next day
        (T0, T0 + timedelta(days=1, hours=3), [1, 2]),  # a time inside a day includes it
        (date(2026, 11, 2), date(2026, 11, 11), [2, 10]),
        (T0 + timedelta(days=10), T0 + timedelta(days=20), []),
    ],
)
def test_windows_are_whole_utc_days(store: Store, since, until, days: list[int]) -> None:  # type: ignore[no-untyped-def]
    _aggregate_world(store)
    daily = store.daily_totals("example.com", since=since, until=until)
    assert [d.day.day for d in daily] == days


def test_checks_history(store: Store) -> None:
    assert store.latest_check("example.com") is None
    ids = [
        store.save_check(
            domain="Example.com.",
            observed_at=NOW + timedelta(hours=h),
            stage="testing",
            mode="testing",
            worst_severity="warning",
            findings_count=h,
            policy_id=f"2026112{h}",
            policy_sha256="ab" * 32,
            mx_set=["mx2.example.com", "mx1.example.com"],
            result={"findings": [{"code": "sts.policy.max-age"}], "n": h},
        )
        for h in (2, 0, 1)
    ]
    latest = store.latest_check("example.com")
    assert latest is not None and latest.id == ids[0]
    assert latest.mx_set == ("mx1.example.com", "mx2.example.com")
    assert latest.result == {"findings": [{"code": "sts.policy.max-age"}], "n": 2}
    assert latest.observed_at == NOW + timedelta(hours=2)
    history = store.check_history("example.com", since=NOW + timedelta(hours=1))
    assert [c.findings_count for c in history] == [1, 2]
    # A limit keeps the newest checks (a rollout judges the latest), still oldest first.
    assert [c.findings_count for c in store.check_history("example.com", limit=2)] == [1, 2]
    assert [c.findings_count for c in store.check_history("example.com")] == [0, 1, 2]
    assert store.list_domains() == ["example.com"]
    store.add_report(new(make_report("z", domain="zeta.org")))
    assert store.list_domains() == ["example.com", "zeta.org"]


def test_history_entries_read_without_documents_equal_the_full_read(store: Store) -> None:
    from stspilot.rollout.evidence import history_from_checks

    results: list[dict[str, Any]] = [
        {"policy": {"max_age": 604800, "mode": "enforce"}},
        {"policy": {"max_age": None}},
        {"policy": None},
        {},
        {"policy": {"max_age": "soon"}},  # not a number in the document: no max_age
    ]
    for h, result in enumerate(results):
        store.save_check(
            domain="example.com",
            observed_at=NOW + timedelta(hours=h),
            stage="testing",
            mode="enforce" if h == 0 else None,
            worst_severity=None,
            findings_count=0,
            policy_id=f"2026112{h}" if h % 2 else None,
            policy_sha256="ab" * 32 if h == 0 else None,
            mx_set=[f"mx{h}.example.com"],
            result=result,
        )
    full = history_from_checks(store.check_history("example.com"))
    assert store.history_entries("example.com") == full
    assert [e.max_age for e in full] == [604800, None, None, None, None]
    since = NOW + timedelta(hours=3)
    assert store.history_entries("example.com", since) == full[3:]
    assert store.history_entries("Example.com.", limit=2) == full[3:]
    newest = store.check_history("example.com")[-1]
    assert store.get_check(newest.id) == newest and store.get_check(10**9) is None


def test_reopen_keeps_data_and_does_not_migrate_again(store_url: str) -> None:
    with Store.open(store_url) as first:
        first.add_report(new(make_report("keep")))
    with Store.open(store_url) as second:
        assert second.count_reports() == 1


def test_concurrent_writers_store_each_report_once(store_url: str) -> None:
    reports = [make_report(f"c{i}") for i in range(200)]
    stores = [Store.open(store_url) for _ in range(3)]
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def work(s: Store, offset: int) -> None:
        try:
            statuses: list[str] = []
            for start in range(0, len(reports), 20):
                part = reports[(start + offset) % 200 : (start + offset) % 200 + 20]
                statuses += [r.status for r in s.add_reports([new(r) for r in part])]
            outcomes.append(statuses)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, k * 60)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert sum(o.count("new") for o in outcomes) == 200
        assert stores[0].count_reports() == 200
    finally:
        for s in stores:
            s.close()


def test_bad_urls_are_config_errors() -> None:
    from stspilot.errors import ConfigError

    with pytest.raises(ConfigError):
        Store.open("mysql://localhost/x")


# --- crash safety: SIGKILL a writer at random moments, then re-run ----------------------------

WRITER = r"""
import sys
from datetime import UTC, datetime, timedelta
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport
from stspilot.store import NewReport, Store

def report(i):
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i % 20)
    pols = tuple(
        PolicyResult("sts", f"d{k}.example", ("version: STSv1",), ("mx.example",), 10 + i, k,
                     tuple(FailureDetail("certificate-expired", 1, "192.0.2.1", "mx.example")
                           for _ in range(k)))
        for k in range(3)
    )
    return TlsReport("Org", f"r{i}", start, start + timedelta(hours=23), None, pols)

store = Store.open(sys.argv[1])
total, size = int(sys.argv[2]), int(sys.argv[3])
for lo in range(0, total, size):
    items = [NewReport(report(i), f"raw{i}".encode(), f"f{i}", datetime.now(UTC))
             for i in range(lo, min(total, lo + size))]
    store.add_reports(items)
    print(lo + size, flush=True)
"""


def _consistent(store: Store) -> int:
    """Every stored report has all its policies, details and raw bytes: nothing half-written."""
    from sqlalchemy import text

    with store.engine.connect() as conn:
        bad = conn.execute(
            text(
                "SELECT count(*) FROM reports r WHERE r.policy_count != "
                "(SELECT count(*) FROM report_policies p WHERE p.report_pk = r.id) "
                "OR 3 != (SELECT count(*) FROM failure_details f WHERE f.report_pk = r.id) "
                "OR NOT EXISTS (SELECT 1 FROM raw_blobs b WHERE b.sha256 = r.raw_sha256)"
            )
        ).scalar_one()
        assert bad == 0
    return store.count_reports()


def test_sigkill_during_writes_then_rerun_stores_each_report_once(store_url: str) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    total, size = 3000, 100
    Store.open(store_url).close()  # migrate first, so the kill lands in the writes
    rng = random.Random(8461)
    counts = []
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(total), str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one batch committed, then kill mid-run
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        with Store.open(store_url) as store:
            counts.append(_consistent(store))
    assert counts[0] > 0 and counts == sorted(counts)  # committed batches survive
    done = subprocess.run(
        [sys.executable, "-c", WRITER, store_url, str(total), str(size)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert done.returncode == 0
    with Store.open(store_url) as store:
        assert _consistent(store) == total


def test_nul_characters_from_hostile_reports_are_stored(store: Store) -> None:
    # JSON allows "\u0000"; PostgreSQL text/jsonb do not: the store replaces it, both backends.
    nul = "\x00"
    report = TlsReport(
        organization_name=f"Evil{nul}Org",
        report_id=f"id{nul}1",
        start=T0,
        end=T0 + timedelta(days=1),
        policies=(
            PolicyResult(
                "sts",
                "example.com",
                (f"mx: a{nul}b",),
                (f"a{nul}b",),
                1,
                1,
                (FailureDetail("validation-failure", 1, failure_reason_code=nul),),
            ),
        ),
    )
    env = {"subject": f"x{nul}y"}
    first = store.add_report(new(report, envelope=env))
    assert store.add_report(new(report, raw=b"again")).status == "duplicate"
    stored = store.get_report(first.report_pk)
    assert stored is not None
    assert stored.report.organization_name == "Evil\ufffdOrg"
    assert stored.report.policies[0].policy_string == ("mx: a\ufffdb",)
    assert stored.report.policies[0].failure_details[0].failure_reason_code == "\ufffd"
    assert stored.envelope == {"subject": "x\ufffdy"}
    q = store.quarantine(b"x", origin=f"o{nul}", code="c", reason=f"r{nul}", received_at=NOW)
    assert store.get_quarantine(q.id).reason == "r\ufffd"  # type: ignore[union-attr]


def test_session_sums_do_not_overflow(store: Store) -> None:
    """Two reports of 2**62 sessions each (stored through the library, which does not apply
    the parser's ``Limits.max_sessions``) sum past 2**63 - 1: SQLite's SUM raised "integer
    overflow" and every summary of the domain failed."""
    huge = 2**62
    store.add_reports(
        [
            new(make_report(f"h{i}", ok=huge, failures=(("certificate-expired", huge, "", ""),)))
            for i in range(2)
        ]
    )
    window = {"since": T0, "until": T0 + timedelta(days=1)}
    (daily,) = store.daily_totals("example.com", **window)
    assert (daily.successful, daily.failed) == (2 * huge, 2 * huge)
    (sender,) = store.sender_totals("example.com", **window)
    assert sender.failed == 2 * huge
    (count,) = store.failure_counts("result_type", "example.com", **window)
    assert count.sessions == 2 * huge
    aggregates = store.report_aggregates("example.com", **window)
    assert aggregates.daily == (daily,)
    rollout = DashboardReads(store).report_windows(["example.com"], **window)["example.com"]
    assert sum(t.failed for t in rollout.totals) == 2 * huge
    assert sum(f.sessions for f in rollout.failures) == 2 * huge


def test_a_nul_in_a_searched_value_finds_what_was_stored_on_both_engines(store: Store) -> None:
    """A report naming a domain with a NUL is stored with U+FFFD in its place on both engines;
    asking for that domain as the report spelt it was an error on PostgreSQL ("text fields
    cannot contain NUL") and an empty answer on SQLite. Both now find the report."""
    domain = "evil\x00.example"
    first = store.add_report(new(make_report("nul-1", domain=domain)))
    window = {"since": T0, "until": T0 + timedelta(days=1)}
    assert [r.pk for r in store.list_reports(domain=domain)] == [first.report_pk]
    assert [d.reports for d in store.daily_totals(domain, **window)] == [1]
    assert store.report_aggregates(domain, **window).daily[0].policy_domain == "evil\ufffd.example"
    assert store.latest_check(domain) is None
