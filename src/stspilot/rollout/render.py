"""Presentation of ``stspilot rollout`` and ``stspilot generate``: rich text and JSON documents.

JSON schemas: ``stspilot.rollout/1`` (one assessment) and ``stspilot.generate/1`` (one
publication); both are described in ``docs/rollout.md``.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stspilot.findings import Finding, Severity, finding_to_json
from stspilot.rollout.assess import RolloutAssessment, Stage
from stspilot.rollout.generate import Publication
from stspilot.rollout.runbooks import Plan

ROLLOUT_SCHEMA = "stspilot.rollout/1"
GENERATE_SCHEMA = "stspilot.generate/1"

_STAGE_WORDS = {
    Stage.NONE: "none (no MTA-STS, no TLS-RPT)",
    Stage.REPORTING: "reporting only (TLS-RPT, no policy)",
    Stage.TESTING: "testing",
    Stage.FIXING: "fixing (testing, with failures)",
    Stage.ENFORCE: "enforce",
    Stage.WINDING_DOWN: "winding down (mode: none)",
}
_SEVERITY_STYLE = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "red"}


# --- JSON -----------------------------------------------------------------------------------


def _pairs(pairs: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
    return [{"name": k, "sessions": n} for k, n in pairs]


def rollout_to_json(a: RolloutAssessment) -> dict[str, Any]:
    w = a.what_if
    r = a.runbooks
    return {
        "schema": ROLLOUT_SCHEMA,
        "domain": a.domain,
        "assessed_at": a.assessed_at.isoformat(),
        "stage": str(a.stage),
        "since": a.since.isoformat() if a.since else None,
        "since_is_lower_bound": a.since_is_lower_bound,
        "ready_for_enforce": a.ready,
        "gate": [
            {"name": c.name, "title": c.title, "verdict": str(c.verdict), "evidence": c.evidence}
            for c in a.gate
        ],
        "what_if": {
            "days": w.days,
            "sessions": w.sessions,
            "failed": w.failed,
            "refused_under_enforce": w.refused,
            "by_organization": _pairs(w.by_organization),
            "by_mx": _pairs(w.by_mx),
            "by_result_type": _pairs(w.by_result_type),
            "other_failures": _pairs(w.other_failures),
            "dane_refused": w.dane_refused,
            "dane_by_type": _pairs(w.dane_by_type),
            "gone_mx": _pairs(w.gone_mx),
            "unauthenticated_sessions": w.unauthenticated_sessions,
            "by_reporter": [
                {
                    "organization": rep.organization,
                    "sessions": rep.sessions,
                    "failed": rep.failed,
                    "authenticated": rep.authenticated,
                }
                for rep in w.by_reporter
            ],
            "volume_jumps": list(w.volume_jumps),
        },
        "next_step": r.next_step.to_dict(),
        "rollback": r.rollback.to_dict() if r.rollback else None,
        "decommission": r.decommission.to_dict(),
        "mx_migration": r.migration.to_dict() if r.migration else None,
        "tlsa_rollover": r.tlsa_rollover.to_dict() if r.tlsa_rollover else None,
        "findings": [finding_to_json(f) for f in a.findings],
    }


def publication_to_json(p: Publication) -> dict[str, Any]:
    return {"schema": GENERATE_SCHEMA, **p.to_dict()}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


# --- text -----------------------------------------------------------------------------------


def _findings_table(findings: tuple[Finding, ...]) -> Table:
    table = Table(show_header=True, header_style="bold", expand=False, box=None, padding=(0, 1))
    table.add_column("")
    table.add_column("finding")
    for f in findings:
        style = _SEVERITY_STYLE[f.severity]
        body = Text.assemble(
            (f.title, "bold"),
            f"  [{f.code}]\n",
            f.detail,
            "\n",
            ("Fix: ", "bold"),
            f.fix,
            (f"  ({f.rfc})", "dim"),
        )
        table.add_row(Text(f.severity.label, style=style), body)
    return table


def _print_publication(p: Publication, console: Console) -> None:
    """Records and a policy meant to be copied: outside any panel, each line printed whole
    (never wrapped, folded or cut, whatever the terminal's width)."""
    lines: list[Text] = [
        Text("DNS (zone-file lines):", style="bold"),
        *(Text("  " + line) for line in p.zone_lines),
        Text(f"Policy file, served at {p.policy_url}:", style="bold"),
        *(Text("  " + line) for line in p.policy_text.splitlines()),
    ]
    for line in lines:
        console.print(line, soft_wrap=True, crop=False, overflow="ignore")


def _plan_group(plan: Plan) -> Group:
    parts: list[Any] = [Text(plan.summary, style="italic")]
    for step in plan.steps:
        # Runbooks number their own phases ("1. Add the new hosts ..."); the rest are bullets.
        parts.append(Text(f"  {step}" if step[:1].isdigit() else f"  - {step}"))
    if plan.publications:
        parts.append(Text("What to publish: below this box.", style="dim"))
    if plan.wait_until:
        parts.append(Text(f"Wait until: {plan.wait_until:%Y-%m-%d %H:%M} UTC", style="bold"))
    for item in plan.watch:
        parts.append(Text(f"  watch: {item}", style="dim"))
    return Group(*parts)


def _render_plan(plan: Plan, title: str, console: Console) -> None:
    console.print(Panel(_plan_group(plan), title=title, title_align="left"))
    for pub in plan.publications:
        _print_publication(pub, console)


def render_rollout_text(a: RolloutAssessment, console: Console) -> None:
    since = ""
    if a.since:
        since = f" since {'at least ' if a.since_is_lower_bound else ''}{a.since:%Y-%m-%d}"
    console.print(Text.assemble((a.domain, "bold"), f"  stage: {_STAGE_WORDS[a.stage]}{since}"))

    verdict = (
        Text("READY for enforce", style="bold green")
        if a.ready
        else Text("NOT ready for enforce", style="bold red")
    )
    if a.stage is Stage.ENFORCE:
        verdict = Text(
            "enforcing, healthy" if a.ready else "enforcing, with problems",
            style="bold green" if a.ready else "bold red",
        )
    gate = Table(box=None, padding=(0, 1), show_header=False)
    gate.add_column()
    gate.add_column()
    for c in a.gate:
        mark = Text("pass", style="green") if c.passed else Text("FAIL", style="red")
        gate.add_row(mark, Text.assemble((c.title, "bold"), "\n", escape(c.evidence)))
    console.print(Panel(Group(verdict, gate), title="Gate", title_align="left"))

    w = a.what_if
    lines = [
        Text(
            f"In the last {w.days} days: {w.sessions:,} sessions reported, {w.failed:,} failed; "
            f"enforce would have refused {w.refused:,}."
        )
    ]
    for label, pairs in (
        ("by sender", w.by_organization),
        ("by MX", w.by_mx),
        ("by result", w.by_result_type),
        ("refused by DANE senders already, whatever the mode", w.dane_by_type),
        ("not refusals (policy fetch, other)", w.other_failures),
        ("on MX hosts no longer live (not counted)", w.gone_mx),
    ):
        if pairs:
            lines.append(Text(f"  {label}: " + ", ".join(f"{k} {n:,}" for k, n in pairs[:8])))
    if w.unauthenticated_sessions:
        lines.append(
            Text(
                f"  {w.unauthenticated_sessions:,} successful sessions in unauthenticated "
                "reports (HTTPS, unverified mail) are not counted"
            )
        )
    for rep in w.by_reporter[:8]:
        trust = "" if rep.authenticated else ", unauthenticated"
        lines.append(
            Text(
                f"  reporter {rep.organization}: {rep.failed:,} failed of {rep.sessions:,} "
                f"({rep.failure_rate:.1%}{trust})"
            )
        )
    for jump in w.volume_jumps:
        lines.append(Text(f"  volume jump: {jump}", style="yellow"))
    console.print(Panel(Group(*lines), title="What if enforce had been on", title_align="left"))

    r = a.runbooks
    _render_plan(r.next_step, f"Next step: {r.next_step.title}", console)
    if r.migration:
        _render_plan(r.migration, r.migration.title, console)
    if r.rollback:
        _render_plan(r.rollback, "Rollback", console)
    if r.tlsa_rollover:
        _render_plan(r.tlsa_rollover, r.tlsa_rollover.title, console)
    # Removing MTA-STS is worth a panel only while a policy is served (and not already shown).
    if r.decommission is not r.next_step and a.stage in (
        Stage.TESTING,
        Stage.FIXING,
        Stage.ENFORCE,
    ):
        _render_plan(r.decommission, "Decommission", console)
    if a.findings:
        console.print(Panel(_findings_table(a.findings), title="Findings", title_align="left"))


def render_publication_text(p: Publication, console: Console) -> None:
    console.print(Text.assemble((p.domain, "bold"), f"  mode {p.mode}, max_age {p.max_age}"))
    _print_publication(p, console)
    console.print(Text("Order:", style="bold"))
    for i, step in enumerate(p.steps, 1):
        console.print(Text(f"  {i}. {step}"))
    if p.findings:
        console.print(_findings_table(p.findings))
