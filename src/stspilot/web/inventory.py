"""The inventory's lines: each hosted domain's stage and gate from its latest stored check and
report window (``inventory_line``, pure), its sparkline, and the whole filtered inventory sorted
(``sorted_page``) or exported as CSV (``sorted_inventory``, ``csv_row``).

The routes are in ``web/pages.py``. A page in the store's order (by name) reads only its own
rows; any other order reads every matching domain's row and what that order needs (its check,
alerts or report totals), then makes the lines of the page shown; stage and gate orders and the
CSV export make every matching domain's line (report window and gate, 500 at a time, without
sparklines). A line's report window is read per day (``DashboardReads.gate_windows``): a row
shows the gate's verdicts, never its evidence, which alone names reporters and result types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import Request

from stspilot.rollout.evidence import ReportWindow
from stspilot.store.accounts import User
from stspilot.store.dashboard import DashboardReads, InventoryRow
from stspilot.store.models import CheckRecord
from stspilot.web import charts
from stspilot.web.auth import context
from stspilot.web.domain_view import GATE_DAYS, WINDOW_DAYS, cert_expiry

STAGE_ORDER = ("unchecked", "none", "reporting", "testing", "fixing", "enforce", "winding-down")


def _reads(request: Request) -> DashboardReads:
    return DashboardReads(context(request).store)


def _tenant_scope(user: User) -> int | None:
    return None if user.is_admin else user.tenant_id


@dataclass(frozen=True, slots=True)
class InventoryLine:
    """One row of the inventory table."""

    domain: str
    tenant: str
    mode: str
    state: str
    policy_id: str
    stage: str
    ready: bool | None  # None: no stored check to judge from
    gate_failing: tuple[str, ...]
    checked_at: datetime | None
    findings: int | None
    worst: str | None
    cert_days: int | None
    cert_host: str
    sessions: int
    failed: int
    spark: str = ""  # the 14-day sparkline (inline SVG)

    @property
    def rate(self) -> float | None:
        """Failed sessions per 100 over the window; None without sessions."""
        return 100.0 * self.failed / self.sessions if self.sessions else None


def window_series(window: ReportWindow, *, last: date, days: int) -> charts.DailySeries:
    """The report window's sessions per UTC day over the ``days`` days ending ``last``."""
    first = last - timedelta(days=days - 1)
    ok: dict[date, int] = {}
    bad: dict[date, int] = {}
    for t in window.totals:
        ok[t.day] = ok.get(t.day, 0) + t.successful
        bad[t.day] = bad.get(t.day, 0) + t.failed
    span = tuple(first + timedelta(days=i) for i in range(days))
    return charts.DailySeries(
        span, tuple(ok.get(d, 0) for d in span), tuple(bad.get(d, 0) for d in span)
    )


def inventory_line(
    row: InventoryRow,
    check: CheckRecord | None,
    window: ReportWindow,
    now: datetime,
    *,
    spark: bool = True,
) -> InventoryLine:
    """Stage and gate from the latest stored check and the report window (pure): the gate
    alone (``assess_gate``), as a row shows no what-if, findings or runbooks; its verdicts
    only (failing criteria by title), so the window may be ``DashboardReads.gate_windows``'.
    ``spark=False``: no sparkline (a line that is sorted or exported, not shown)."""
    from stspilot.rollout.assess import assess_gate
    from stspilot.store.checks import live_state

    sessions = sum(t.successful + t.failed for t in window.totals)
    failed = sum(t.failed for t in window.totals)
    drawn = (
        charts.sparkline(window_series(window, last=now.date(), days=WINDOW_DAYS)) if spark else ""
    )
    if check is None:
        return InventoryLine(
            row.domain, row.tenant, row.mode, row.state, row.policy_id, "unchecked", None, (),
            None, None, None, None, "", sessions, failed, drawn,
        )  # fmt: skip
    assessment = assess_gate(live_state(check), window, now=now, gate_days=GATE_DAYS)
    days, host = cert_expiry(check, now)
    return InventoryLine(
        row.domain, row.tenant, row.mode, row.state, row.policy_id, str(assessment.stage),
        assessment.ready, tuple(c.title for c in assessment.gate if not c.passed),
        check.observed_at, check.findings_count, check.worst_severity, days, host,
        sessions, failed, drawn,
    )  # fmt: skip


# Inventory columns a user may sort by (``?sort=``), each a key of an ``InventoryLine`` and its
# open alerts; ties go by name. "domain" ascending is the store's own order: one page is read.
# Any other order, and the CSV export, cover the whole filtered inventory: every matching
# domain's line is made (its report window and gate), then sorted and cut to the page.
SORT_KEYS: dict[str, Any] = {
    "domain": lambda line, alerts: (line.domain,),
    "mode": lambda line, alerts: (line.mode, line.domain),
    "stage": lambda line, alerts: (stage_rank(line.stage), line.domain),
    "gate": lambda line, alerts: (_gate_rank(line), line.domain),
    "checked": lambda line, alerts: (line.checked_at.isoformat() if line.checked_at else "",),
    "findings": lambda line, alerts: (-1 if line.findings is None else line.findings,),
    "alerts": lambda line, alerts: (alerts.get(line.domain, (0, ""))[0],),
    "cert": lambda line, alerts: (99999 if line.cert_days is None else line.cert_days,),
    "sessions": lambda line, alerts: (line.sessions,),
    "failed": lambda line, alerts: (line.failed,),
    "rate": lambda line, alerts: (-1.0 if line.rate is None else line.rate,),
}
CSV_COLUMNS = (
    "Domain", "Served mode", "Stage", "Enforce gate", "Last check", "Findings", "Alerts",
    "MX certificate", "Sessions", "Failed", "Failure rate",
)  # fmt: skip


def _gate_rank(line: InventoryLine) -> int:
    """Ready first, then by how many criteria fail; no check last."""
    if line.ready is None:
        return 1_000
    return 0 if line.ready else len(line.gate_failing)


def gate_text(line: InventoryLine) -> str:
    """The enforce gate as the inventory's CSV writes it."""
    if line.ready is None:
        return "no check"
    if line.ready:
        return "ready"
    what = "no longer hold" if line.stage == "enforce" else "failing"
    return f"{len(line.gate_failing)} {what}"


def csv_row(line: InventoryLine, alerts: dict[str, tuple[int, str]]) -> list[str]:
    """One domain's plain figures (the CSV export): what its table row shows, unformatted."""
    count, worst = alerts.get(line.domain, (0, ""))
    return [
        line.domain,
        line.mode,
        line.stage,
        gate_text(line),
        line.checked_at.isoformat() if line.checked_at else "",
        "" if line.findings is None else f"{line.findings}{' ' + line.worst if line.worst else ''}",
        f"{count}{' ' + worst if count else ''}",
        "" if line.cert_days is None else str(line.cert_days),
        str(line.sessions),
        str(line.failed),
        "" if line.rate is None else f"{line.rate:.4f}",
    ]


def csv_field(value: str) -> str:
    """A cell a spreadsheet would run as a formula (= + - @, tab, CR) gets a leading quote
    (OWASP "CSV injection"); plain numbers stay numbers (``dashboard.js`` does the same)."""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


@dataclass(frozen=True, slots=True)
class _Filters:
    q: str
    stage: str
    severity: str
    sort: str
    descending: bool


def filters(q: str, stage: str, severity: str, sort: str, order: str) -> _Filters:
    from stspilot.store.dashboard import SEVERITY_FILTERS, STAGE_FILTERS

    return _Filters(
        q,
        stage if stage in STAGE_FILTERS else "",
        severity if severity in SEVERITY_FILTERS else "",
        sort if sort in SORT_KEYS else "domain",
        order == "desc",
    )


def make_lines(
    request: Request,
    user: User,
    rows: tuple[InventoryRow, ...],
    now: datetime,
    *,
    spark: bool = True,
) -> list[InventoryLine]:
    """The inventory lines of ``rows``: their latest checks, report windows (the tenant's
    hosting period of each domain; read per day, as the gate's verdicts and the figures
    need them) and gates, a few queries per chunk of rows; sparklines unless ``spark`` is
    False (lines sorted or exported, not shown)."""
    reads = _reads(request)
    found = reads.checks_by_id([r.latest_check_id for r in rows if r.latest_check_id is not None])
    windows = reads.gate_windows(
        [r.domain for r in rows],
        since=now - timedelta(days=WINDOW_DAYS + 1),
        until=now,
        # A tenant's figures, sparkline and gate count the reports of its hosting period.
        received_since=None if user.is_admin else {r.domain: r.hosted_since for r in rows},
    )
    return [
        inventory_line(
            r,
            found.get(r.latest_check_id) if r.latest_check_id is not None else None,
            windows.get(r.domain, ReportWindow()),
            now,
            spark=spark,
        )
        for r in rows
    ]


def _all_rows(request: Request, user: User, f: _Filters) -> list[InventoryRow]:
    """Every domain of the filtered inventory (the store's pages of ``MAX_PAGE``)."""
    from stspilot.store.dashboard import MAX_PAGE

    reads = _reads(request)
    rows: list[InventoryRow] = []
    while True:
        chunk = reads.inventory(
            _tenant_scope(user), search=f.q, stage=f.stage, severity=f.severity,
            limit=MAX_PAGE, offset=len(rows),
        )  # fmt: skip
        rows += chunk.rows
        if not chunk.rows or len(rows) >= chunk.total:
            return rows


def sorted_inventory(
    request: Request, user: User, f: _Filters, now: datetime
) -> tuple[list[InventoryLine], dict[str, tuple[int, str]]]:
    """Every domain of the filtered inventory, as lines in the order asked for (the CSV),
    without sparklines."""
    lines, alerts, _ = _every_line(request, user, f, now)
    return lines, alerts


def _every_line(
    request: Request, user: User, f: _Filters, now: datetime
) -> tuple[list[InventoryLine], dict[str, tuple[int, str]], dict[str, InventoryRow]]:
    from stspilot.store.monitor import MonitorStore

    rows = _all_rows(request, user, f)
    lines: list[InventoryLine] = []
    for i in range(0, len(rows), 500):
        lines += make_lines(request, user, tuple(rows[i : i + 500]), now, spark=False)
    alerts = MonitorStore(context(request).store).open_alert_counts([x.domain for x in lines])
    key = SORT_KEYS[f.sort]
    lines.sort(key=lambda x: x.domain)  # ties by name, whatever the direction
    lines.sort(key=lambda x: key(x, alerts), reverse=f.descending)
    return lines, alerts, {r.domain: r for r in rows}


# Orders known without each domain's gate: its row, latest check, open alerts and (sessions,
# failed, rate) the report totals alone, so a sorted page makes only its own 50 lines.
_CHEAP_SORTS = {
    "domain",
    "mode",
    "checked",
    "findings",
    "alerts",
    "cert",
    "sessions",
    "failed",
    "rate",
}


def sorted_page(
    request: Request, user: User, f: _Filters, now: datetime, page: int, per: int
) -> tuple[list[InventoryLine], dict[str, tuple[int, str]], int]:
    """One page of the whole filtered inventory in the order asked for. Orders by stage or
    gate make every domain's line; the others sort on what they need and make the page's."""
    from stspilot.store.monitor import MonitorStore

    if f.sort not in _CHEAP_SORTS:  # every line's gate, then the page's lines with sparklines
        every, alerts, by_name = _every_line(request, user, f, now)
        page_rows = tuple(by_name[x.domain] for x in every[(page - 1) * per : page * per])
        return make_lines(request, user, page_rows, now), alerts, len(every)
    reads = _reads(request)
    rows = _all_rows(request, user, f)
    alerts = MonitorStore(context(request).store).open_alert_counts([r.domain for r in rows])
    found = {}
    if f.sort in ("checked", "findings", "cert"):
        found = reads.checks_by_id(
            [r.latest_check_id for r in rows if r.latest_check_id is not None]
        )
    totals: dict[str, tuple[int, int]] = {}
    if f.sort in ("sessions", "failed", "rate"):
        totals = reads.window_sums(
            [r.domain for r in rows],
            since=now - timedelta(days=WINDOW_DAYS + 1),
            until=now,
            received_since=None if user.is_admin else {r.domain: r.hosted_since for r in rows},
        )

    def key(row: InventoryRow) -> tuple[Any, ...]:
        check = found.get(row.latest_check_id) if row.latest_check_id is not None else None
        sessions, failed = totals.get(row.domain, (0, 0))
        if f.sort == "mode":
            return (row.mode, row.domain)
        if f.sort == "checked":
            return (check.observed_at.isoformat() if check else "",)
        if f.sort == "findings":
            return (-1 if check is None else check.findings_count,)
        if f.sort == "alerts":
            return (alerts.get(row.domain, (0, ""))[0],)
        if f.sort == "cert":
            days = cert_expiry(check, now)[0] if check is not None else None
            return (99999 if days is None else days,)
        if f.sort == "sessions":
            return (sessions,)
        if f.sort == "failed":
            return (failed,)
        if f.sort == "rate":
            return (100.0 * failed / sessions if sessions else -1.0,)
        return (row.domain,)

    rows.sort(key=lambda r: r.domain)  # ties by name, whatever the direction
    rows.sort(key=key, reverse=f.descending)
    shown = tuple(rows[(page - 1) * per : page * per])
    return make_lines(request, user, shown, now), alerts, len(rows)


def stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
