"""The rollout pilot: stage, enforce gate, what-if and next step, decided from evidence.

Pure core: no I/O and no clock (``now`` is a parameter). ``assess_rollout`` takes what the
latest check saw (``LiveState``), the TLS-RPT report counts of a window (``ReportWindow``) and
the stored check history, and answers the questions of the staged playbook (reporting →
testing → fix → enforce): which stage, since when, is enforce safe (named criteria, each with
its evidence), what would enforce have refused, and what exactly to publish next. The
runbooks (next step, rollback, decommission, MX migration) are in ``runbooks.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from stspilot.findings import Finding, Severity, finding
from stspilot.rollout.evidence import (
    DailyTotal,
    FailureCount,
    HistoryEntry,
    LiveState,
    MxState,
    ReportWindow,
    RolloutInputs,
    window_from_reports,
)
from stspilot.rollout.gate import (
    REFUSED_UNDER_ENFORCE,
    Criterion,
    Stage,
    Verdict,
    WhatIf,
    compute_what_if,
    evaluate_gate,
    fmt_top,
)
from stspilot.rollout.runbooks import Plan, Runbooks, build_runbooks
from stspilot.sts.names import fold_name

__all__ = [
    "REFUSED_UNDER_ENFORCE",
    "Criterion",
    "DailyTotal",
    "FailureCount",
    "GateAssessment",
    "HistoryEntry",
    "LiveState",
    "MxState",
    "Plan",
    "ReportWindow",
    "RolloutAssessment",
    "RolloutInputs",
    "Runbooks",
    "Stage",
    "Verdict",
    "WhatIf",
    "assess_gate",
    "assess_rollout",
    "window_from_reports",
]


@dataclass(frozen=True, slots=True)
class RolloutAssessment:
    domain: str
    assessed_at: datetime
    stage: Stage
    since: datetime | None  # first check seen in this stage; None when history is silent
    since_is_lower_bound: bool  # the oldest stored check is already in this stage
    gate: tuple[Criterion, ...]
    what_if: WhatIf
    runbooks: Runbooks
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return all(c.passed for c in self.gate)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)


def _stage(live: LiveState, failing: bool) -> Stage:
    published = live.sts_id is not None and live.mode is not None
    if not published:
        return Stage.REPORTING if live.tlsrpt_rua else Stage.NONE
    if live.mode == "enforce":
        return Stage.ENFORCE
    if live.mode == "none":
        return Stage.WINDING_DOWN
    return Stage.FIXING if failing else Stage.TESTING


def _stage_key(mode: str | None, policy_id: str | None) -> str | None:
    return mode if (policy_id is not None and mode is not None) else None


def _since(live: LiveState, history: Sequence[HistoryEntry]) -> tuple[datetime | None, bool]:
    """When the current mode began: the oldest check of the unbroken run ending now."""
    key = _stage_key(live.mode, live.sts_id)
    since: datetime | None = None
    run_reaches_oldest = True
    for entry in sorted(history, key=lambda e: e.observed_at, reverse=True):
        if _stage_key(entry.mode, entry.policy_id) != key:
            run_reaches_oldest = False
            break
        since = entry.observed_at
    if since is None:
        return None, False
    return since, run_reaches_oldest


def _history_findings(live: LiveState, history: Sequence[HistoryEntry]) -> list[Finding]:
    """Policy text changed while the id stayed: senders keep the old one (RFC 8461 §3.1, §8.1)."""
    points = [(e.observed_at, e.policy_id, e.policy_sha256) for e in history]
    points.append((live.observed_at, live.sts_id, live.policy_sha256))
    points.sort(key=lambda p: p[0])
    out: list[Finding] = []
    for (_, id_a, sha_a), (when, id_b, sha_b) in pairwise(points):
        if id_a and id_a == id_b and sha_a and sha_b and sha_a != sha_b:
            out.append(
                finding(
                    "rollout.id-not-bumped",
                    f"The policy served changed by {when:%Y-%m-%d %H:%M} UTC but the TXT id is "
                    f"still {id_b}: senders that cached the earlier policy keep it.",
                    f"Publish _mta-sts.{live.domain} with a new id.",
                    subject=id_b,
                )
            )
    return out[-1:]  # the latest change is the one to act on


@dataclass(frozen=True, slots=True)
class GateAssessment:
    """The stage and the enforce gate alone: what an inventory row shows (``assess_gate``)."""

    domain: str
    stage: Stage
    gate: tuple[Criterion, ...]

    @property
    def ready(self) -> bool:
        return all(c.passed for c in self.gate)


def assess_gate(
    live: LiveState,
    reports: ReportWindow,
    *,
    now: datetime,
    gate_days: int = 7,
    min_sessions: int = 50,
    report_max_age_days: int = 3,
) -> GateAssessment:
    """The stage and gate ``assess_rollout`` would give, without the what-if, history
    findings and runbooks it also builds: the cheap path for a list of many domains. Both
    read the gate window the same way (the ``gate_days`` complete UTC days before ``now``
    and today, RFC 8460 §4.1), so the answers agree for the same inputs."""
    gate = evaluate_gate(
        live,
        reports.since(now.date() - timedelta(days=gate_days)),
        days=gate_days,
        min_sessions=min_sessions,
        now=now,
        report_max_age_days=report_max_age_days,
    )
    clean = next(c for c in gate if c.name == "reports-clean")
    return GateAssessment(live.domain, _stage(live, failing=not clean.passed), gate)


def assess_rollout(
    inputs: RolloutInputs,
    *,
    now: datetime,
    window_days: int = 14,
    gate_days: int = 7,
    min_sessions: int = 50,
    stuck_after_days: int = 30,
    report_max_age_days: int = 3,
) -> RolloutAssessment:
    """Where the domain stands on the playbook and what to do next, with the evidence."""
    live = inputs.live
    live_hosts = frozenset(fold_name(m.host) for m in live.mx)
    # Reports cover whole UTC days and arrive the day after (RFC 8460 §4.1), so "the last N
    # days" are the N complete days before today, plus today should a report already cover it.
    start = now.date() - timedelta(days=window_days)
    gate_start = now.date() - timedelta(days=gate_days)
    window = inputs.reports.since(start)
    gate_window = inputs.reports.since(gate_start)
    what = compute_what_if(window, live_hosts, window_days)
    gate = evaluate_gate(
        live,
        gate_window,
        days=gate_days,
        min_sessions=min_sessions,
        now=now,
        report_max_age_days=report_max_age_days,
    )
    clean = next(c for c in gate if c.name == "reports-clean")
    stage = _stage(live, failing=not clean.passed)
    since, lower_bound = _since(live, inputs.history)
    findings = _history_findings(live, inputs.history)
    findings += _stage_findings(live, stage, gate, what, gate_window, since, now, stuck_after_days)
    runbooks = build_runbooks(
        live,
        stage=stage,
        ready=all(c.passed for c in gate),
        failing=[c for c in gate if not c.passed],
        history_max_age=max((e.max_age or 0 for e in inputs.history), default=0),
        since=since,
        planned_mx=inputs.planned_mx,
        now=now,
    )
    findings += runbooks.findings
    findings.sort(key=lambda f: (-f.severity, f.code, f.subject))
    return RolloutAssessment(
        domain=live.domain,
        assessed_at=now,
        stage=stage,
        since=since,
        since_is_lower_bound=lower_bound,
        gate=gate,
        what_if=what,
        runbooks=runbooks,
        findings=tuple(findings),
    )


def _stage_findings(
    live: LiveState,
    stage: Stage,
    gate: Sequence[Criterion],
    what: WhatIf,
    gate_window: ReportWindow,
    since: datetime | None,
    now: datetime,
    stuck_after_days: int,
) -> list[Finding]:
    out: list[Finding] = []
    ready = all(c.passed for c in gate)
    if stage is Stage.TESTING and ready and since and now - since >= timedelta(stuck_after_days):
        out.append(
            finding(
                "rollout.stuck-testing",
                f"In testing since {since:%Y-%m-%d} ({(now - since).days} days) and the gate "
                "passes: testing refuses nothing, so the domain gets none of MTA-STS's protection.",
                "Publish the enforce policy under Next step.",
            )
        )
    if stage is Stage.ENFORCE and what.refused:
        out.append(
            finding(
                "rollout.enforce.failures",
                f"{what.refused:,} sessions in {what.days} days failed TLS under enforce: "
                f"{fmt_top(what.by_mx)}.",
                "Fix the hosts named, or roll back to testing (see Rollback).",
            )
        )
    orgs = {t.organization for t in gate_window.totals if t.successful + t.failed}
    if len(orgs) == 1 and stage in (Stage.TESTING, Stage.FIXING, Stage.ENFORCE):
        out.append(
            finding(
                "rollout.gate.single-reporter",
                f"Every report in the gate window comes from {next(iter(orgs))}.",
                "Wait for a second large sender's reports before trusting a clean gate.",
            )
        )
    if what.gone_mx:
        out.append(
            finding(
                "rollout.failures-gone-mx",
                f"Failures for hosts no longer in the MX set: {fmt_top(what.gone_mx)}; they do "
                "not count against the gate.",
                "Nothing to do unless the host comes back.",
            )
        )
    return out
