"""What the domain page shows: a domain's stored data read and shaped into the template's
values (``domain_values``), and its sections ordered most urgent first (``sections``).

The route, its access check and the rendering are in ``web/pages.py``; the words (stages,
the gate, live versus hosted) in ``web/explain.py``; the charts in ``web/charts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from stspilot.store.accounts import User
from stspilot.store.dashboard import DashboardReads
from stspilot.store.hosting import HostedDomain
from stspilot.store.models import CheckRecord
from stspilot.web import charts
from stspilot.web.settings import WebContext

GATE_DAYS, WINDOW_DAYS = 7, 14  # the rollout defaults of `stspilot rollout`


def cert_expiry(check: CheckRecord, now: datetime) -> tuple[int | None, str]:
    """(days, MX host) of the MX certificate that expires first, as the check saw it."""
    soonest: tuple[int, str] | None = None
    for mx in check.result.get("mx") or ():
        if not isinstance(mx, dict):
            continue
        days: int | None = None
        when = mx.get("cert_not_after")
        if isinstance(when, str):
            try:
                days = (datetime.fromisoformat(when) - now).days
            except (ValueError, TypeError):
                days = None
        if days is None and isinstance(mx.get("days_to_expiry"), int):
            days = int(mx["days_to_expiry"])
        if days is not None and (soonest is None or days < soonest[0]):
            soonest = (days, str(mx.get("host") or ""))
    return soonest if soonest is not None else (None, "")


def hosting_start(user: User, hosted: HostedDomain | None) -> datetime | None:
    """When the user's tenant began hosting the domain: its reports are those received since
    (the hosting period; the one rule, for the pages and the API); None for administrators, who read
    every report, and for a domain nobody hosts."""
    if user.is_admin or hosted is None:
        return None
    return hosted.created_at


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the domain page, for the jump bar: its anchor, its title and how urgent
    it is now (0: needs action, 1: worth a look, 2: reference)."""

    id: str
    title: str
    urgency: int
    badge: str = ""


def sections(**urgent: tuple[int, str]) -> list[Section]:
    titles = {
        "alerts": "Open alerts",
        "live": "Live vs hosted",
        "failures": "Failures",
        "traffic": "Failure rate",
        "reporters": "Reporters",
        "rollout": "Enforce gate",
        "findings": "Check findings",
        "publish": "DNS records",
        "history": "Policy history",
        "journal": "Publish journal",
    }
    order = list(titles)
    shown = [
        Section(key, titles[key], *urgent[key]) for key in order if urgent.get(key, (-1,))[0] >= 0
    ]
    # Most urgent first; the page's usual order among equals.
    return sorted(shown, key=lambda s: (s.urgency, order.index(s.id)))


def domain_values(
    ctx: WebContext,
    reads: DashboardReads,
    name: str,
    hosted: HostedDomain | None,
    *,
    days: int,
    received_since: datetime | None = None,
) -> dict[str, Any]:
    """Everything the domain page shows of ``name`` over the last ``days`` days, of the
    reports received since ``received_since`` (the tenant's hosting period; see
    ``hosting_start``): charts, tables, reporters, the gate and the what-if."""
    from stspilot.rollout.assess import assess_rollout
    from stspilot.store.checks import rollout_inputs
    from stspilot.store.journal import PublishJournal
    from stspilot.store.monitor import MonitorStore
    from stspilot.tlsrpt.advice import advice_for
    from stspilot.tlsrpt.cadence import CADENCE_DAYS, learn_cadence
    from stspilot.web.explain import gate_words, live_versus_hosted, stage_help
    from stspilot.web.hosting import publish_info
    from stspilot.web.publish import step_title

    now = ctx.clock()
    today = now.date()
    first = today - timedelta(days=days - 1)
    figures = reads.domain_reports(name, since=first, until=now, received_since=received_since)
    series = charts.daily_series(figures.daily, first=first, last=today)
    by_type = charts.breakdown(figures.by_result_type)
    by_mx = charts.breakdown(figures.by_mx)
    by_org = {b.key: b for b in charts.breakdown(figures.by_organization)}
    senders = sorted(figures.senders, key=lambda t: (-t.failed, t.organization_name))
    cadence = learn_cadence(
        reads.reporter_days(
            name,
            since=now - timedelta(days=CADENCE_DAYS),
            until=now,
            received_since=received_since,
        ),
        today=today,
        window_days=CADENCE_DAYS,
    )
    latest = ctx.store.latest_check(name)
    assessment = None
    inputs = rollout_inputs(
        ctx.store,
        name,
        now,
        days=WINDOW_DAYS,
        history_limit=200,
        received_since=received_since,
    )
    if inputs is not None:
        assessment = assess_rollout(inputs, now=now, window_days=WINDOW_DAYS, gate_days=GATE_DAYS)
    stage = str(assessment.stage) if assessment else (latest.stage if latest else "unchecked")
    failing = len([c for c in assessment.gate if not c.passed]) if assessment else 0
    gate_level, gate_text = gate_words(stage, failing, len(assessment.gate) if assessment else 0)
    versions = ctx.hosting.history(name) if hosted else []
    live = (
        live_versus_hosted(
            hosted,
            live_id=latest.policy_id if latest else None,
            result=latest.result if latest else None,
            observed_at=latest.observed_at if latest else None,
            earlier_ids=[v.policy_id for v in versions[1:]],
        )
        if hosted
        else ()
    )
    cert_days, cert_host = cert_expiry(latest, now) if latest else (None, "")
    alerts = MonitorStore(ctx.store).open_alerts(name)
    journal = PublishJournal(ctx.store).runs(name, limit=5)
    check_findings = list((latest.result.get("findings") or []) if latest else [])
    overdue = [c for c in cadence if c.overdue]
    bad_live = [n for n in live if n.level == "bad"]
    failed_share = charts.percent(series.total_failed, series.sessions)
    parts = sections(
        alerts=(0, str(len(alerts))) if alerts else (-1, ""),
        live=(0, "differs") if bad_live else (1 if any(n.level == "warn" for n in live) else 2, "")
        if hosted
        else (-1, ""),
        failures=(0 if series.total_failed else 2, failed_share),
        reporters=(0, f"{len(overdue)} quiet") if overdue else (2, str(len(cadence))),
        rollout=(1 if gate_level in ("bad", "warn") else 2, f"{failing} failing" * bool(failing)),
        findings=(
            0 if any(f.get("severity") == "error" for f in check_findings)
            else (1 if check_findings else 2),
            str(len(check_findings)) if check_findings else "",
        ),
        traffic=(0 if series.total_failed else 2, ""),
        publish=(1 if bad_live else 2, "") if hosted else (-1, ""),
        history=(2, "") if hosted else (-1, ""),
        journal=(2, str(len(journal))) if journal else (-1, ""),
    )  # fmt: skip
    return {
        "domain": name,
        "hosted": hosted,
        "publish": publish_info(hosted, ctx.settings) if hosted else None,
        "versions": versions,
        "latest": latest,
        "check_findings": check_findings,
        "check_mx": list((latest.result.get("mx") or []) if latest else []),
        "alerts": alerts,
        "journal": journal,
        "step_title": step_title,
        "cert_days": cert_days,
        "cert_host": cert_host,
        "assessment": assessment,
        "stage": stage,
        "stage_help": stage_help(stage),
        "gate_level": gate_level,
        "gate_text": gate_text,
        "live": live,
        "sections": parts,
        "days": days,
        "series": series,
        "daily_rows": _daily_rows(series),
        "rate_svg": charts.rate_chart(series, title=f"Failure rate per day, last {days} days"),
        "types_svg": charts.result_type_chart([(b.key, b.sessions) for b in by_type])
        if by_type
        else "",
        "by_type": [(b, advice_for(b.key)) for b in by_type],
        "by_mx": by_mx,
        "mx_failed": sum(b.sessions for b in by_mx),
        "senders": [(t, by_org.get(t.organization_name)) for t in senders],
        "cadence": cadence,
        "cadence_days": CADENCE_DAYS,
        "now": now,
    }


def _daily_rows(series: charts.DailySeries) -> list[tuple[date, int, int]]:
    rows = zip(series.days, series.successful, series.failed, strict=True)
    return [row for row in rows if row[1] or row[2]][::-1]
