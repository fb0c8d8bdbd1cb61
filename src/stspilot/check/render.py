"""Presentation of check results: a readable rich report, and the stable JSON document.

The JSON schema (``stspilot.check/2``) is documented in ``docs/check-json.md``; additions are
allowed within a version, renames and removals need a new one. Version 2 adds DANE (``dane``
per MX host, ``mx_dnssec``) and keeps every field of version 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from stspilot.check.coverage import MxVerdict
from stspilot.check.dane_verdict import DaneState, DaneVerdict
from stspilot.check.evaluate import CheckResult
from stspilot.findings import Finding, Severity, finding_to_json

SCHEMA = "stspilot.check/2"
SUMMARY_OTHER_COLUMNS = 50  # what the summary table needs beside the domain names
FULL_REPORTS_UP_TO = 3  # more domains than this: a summary table only, unless verbose
LINES_FROM = 21  # more domains than 20: a line per domain as each completes, then the tally

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_MARK = {Severity.ERROR: "✗ error", Severity.WARNING: "! warning", Severity.INFO: "i info"}
_STAGE_STYLE = {"enforce": "green", "testing": "yellow", "reporting": "cyan"}


# --- JSON ---------------------------------------------------------------------------------------


def _dane_json(dane: DaneVerdict | None) -> dict[str, Any] | None:
    if dane is None:
        return None
    return {
        "state": str(dane.state),
        "blocks_mail": dane.state.blocks_mail,
        "tlsa_name": dane.tlsa_name,
        "dnssec": str(dane.dnssec),
        "reason": dane.reason,
        "records": list(dane.records),
        "matched": list(dane.matched),
        "rrsig_expires": dane.rrsig_expires.isoformat() if dane.rrsig_expires else None,
        "address_dnssec": dane.address_dnssec or None,  # A/AAAA of the host, RFC 7672 §2.2.2
        "ip": dane.ip or None,  # the address whose chain decided "state"
        "addresses": [
            {"ip": a.ip, "state": str(a.state), "reason": a.reason, "matched": list(a.matched)}
            for a in dane.addresses
        ],
    }


def _mx_json(mx: MxVerdict, dane: DaneVerdict | None = None) -> dict[str, Any]:
    return {
        "host": mx.host,
        "preference": mx.preference,
        "covered_by": mx.covered_by,
        "probe_outcome": mx.probe_outcome,
        "tls_ok": mx.tls_ok,
        "tls_version": mx.tls_version or None,
        "cert_not_after": mx.cert_not_after.isoformat() if mx.cert_not_after else None,
        "days_to_expiry": mx.days_to_expiry,
        "findings": list(mx.finding_codes),
        "dane": _dane_json(dane),  # null when DANE was not checked for the host
        "addresses": [
            {
                "ip": a.ip,
                "probe_outcome": a.probe_outcome,
                "tls_ok": a.tls_ok,
                "tls_version": a.tls_version or None,
                "cert_not_after": a.cert_not_after.isoformat() if a.cert_not_after else None,
                "days_to_expiry": a.days_to_expiry,
                "error": a.error or None,
            }
            for a in mx.addresses
        ],
    }


def result_to_json(result: CheckResult) -> dict[str, Any]:
    """One domain's entry in the ``domains`` list of the ``stspilot.check/2`` document."""
    policy = result.policy
    record = result.sts_record
    tlsrpt = result.tlsrpt
    worst = result.worst
    dane = {verdict.host: verdict for verdict in result.dane}
    return {
        "domain": result.domain,
        "observed_at": result.observed_at.isoformat(),
        "stage": str(result.stage),
        "worst": worst.label if worst else None,
        "deadline_hit": result.deadline_hit,
        "effective": {
            "usable": result.effective.usable,
            "mode": str(result.effective.mode) if result.effective.mode else None,
            "reason_code": result.effective.reason_code,
            "reason": result.effective.reason,
        },
        "sts_record": None
        if record is None
        else {"id": record.id, "extensions": dict(record.extensions)},
        "policy": None
        if policy is None
        else {
            "version": policy.version,
            "mode": str(policy.mode),
            "max_age": policy.max_age,
            "mx": list(policy.mx),
            "extensions": dict(policy.extensions),
        },
        "policy_source": result.policy_source,
        "tlsrpt": {
            "state": str(tlsrpt.state),
            "rua": list(tlsrpt.rua),
            "extensions": dict(tlsrpt.record.extensions) if tlsrpt.record else {},
        },
        "mx": [_mx_json(mx, dane.get(mx.host)) for mx in result.mx],
        "mx_dnssec": None
        if result.mx_dnssec is None
        else {"status": str(result.mx_dnssec.status), "reason": result.mx_dnssec.reason},
        "findings": [finding_to_json(f) for f in result.findings],
    }


@dataclass(slots=True)
class CheckTally:
    """Counts of checked domains by worst finding: all a long run keeps of its results."""

    domains: int = 0
    errors: int = 0
    warnings: int = 0
    clean: int = 0  # no finding above info

    def add(self, result: CheckResult) -> None:
        self.domains += 1
        if result.worst is Severity.ERROR:
            self.errors += 1
        elif result.worst is Severity.WARNING:
            self.warnings += 1
        else:
            self.clean += 1

    @property
    def worst(self) -> Severity | None:
        """The worst severity above info seen (None: every domain clean)."""
        if self.errors:
            return Severity.ERROR
        return Severity.WARNING if self.warnings else None

    def to_json(self) -> dict[str, int]:
        return {
            "domains": self.domains,
            "errors": self.errors,
            "warnings": self.warnings,
            "clean": self.clean,
        }


def check_results_to_json(results: Iterable[CheckResult]) -> dict[str, Any]:
    """The whole ``stspilot.check/2`` document for one or many domains."""
    tally = CheckTally()
    domains = []
    for result in results:
        tally.add(result)
        domains.append(result_to_json(result))
    return {"schema": SCHEMA, "domains": domains, "summary": tally.to_json()}


class CheckJsonDocument:
    """The ``stspilot.check/2`` document as text pieces, one domain at a time.

    ``start()``, then ``entry(result)`` per domain, then ``finish()``: joined, exactly
    ``json.dumps(check_results_to_json(results), indent=2)``. Only the tally is kept, so a
    document of a million domains is written in the memory of one. The summary comes after
    ``domains`` because it is known only at the end.
    """

    def __init__(self) -> None:
        self.tally = CheckTally()

    def start(self) -> str:
        return '{\n  "schema": ' + json.dumps(SCHEMA) + ',\n  "domains": ['

    def entry(self, result: CheckResult) -> str:
        text = json.dumps(result_to_json(result), indent=2, ensure_ascii=False)
        lead = ",\n    " if self.tally.domains else "\n    "
        self.tally.add(result)
        return lead + text.replace("\n", "\n    ")

    def finish(self) -> str:
        summary = json.dumps(self.tally.to_json(), indent=2).replace("\n", "\n  ")
        close = "\n  ]" if self.tally.domains else "]"
        return close + ',\n  "summary": ' + summary + "\n}\n"


def dumps_check_json(results: Iterable[CheckResult]) -> str:
    document = CheckJsonDocument()
    return document.start() + "".join(map(document.entry, results)) + document.finish()


def format_result_jsonl(result: CheckResult) -> str:
    """One domain as one line of JSON (``--jsonl``): the document's ``domains`` entry."""
    return json.dumps(result_to_json(result), ensure_ascii=False, separators=(",", ":")) + "\n"


# --- text ---------------------------------------------------------------------------------------


def _effective_text(result: CheckResult) -> Text:
    effective = result.effective
    if effective.usable:
        return Text(f"senders apply mode {effective.mode}", style="green")
    return Text(f"no MTA-STS policy for senders ({effective.reason})", style="dim")


def _shown_dane(result: CheckResult) -> dict[str, DaneVerdict]:
    """The DANE verdicts worth a column: none when no host publishes TLSA or DANE could not be
    judged for any (no usable trust anchor), so a column of "-" does not crowd the table (the
    JSON keeps every verdict)."""
    quiet = (DaneState.NOT_CHECKED, DaneState.NONE)
    if all(verdict.state in quiet for verdict in result.dane):
        return {}
    return {verdict.host: verdict for verdict in result.dane}


def _mx_cells(result: CheckResult) -> list[tuple[str | Text, ...]]:
    dane = _shown_dane(result)
    has_policy = result.policy is not None and result.effective.usable
    rows = []
    for mx in result.mx:
        if not has_policy:
            covered = Text("-", style="dim")
        elif mx.covered_by:
            covered = Text(mx.covered_by, style="green")
        else:
            covered = Text("NOT COVERED", style="bold red")
        tls = _tls_cell(mx.tls_ok, mx.tls_version, mx.probe_outcome)
        cert = _cert_cell(mx.cert_not_after, mx.days_to_expiry)
        cells: tuple[str | Text, ...] = (str(mx.preference), mx.host, covered, tls, cert)
        if dane:
            cells = (*cells, _dane_text(dane.get(mx.host)))
        rows.append(cells)
        if len(mx.addresses) > 1:  # every address was probed (RFC 8461 §4.2): show each
            for addr in mx.addresses:
                extra: tuple[str | Text, ...] = (
                    "",
                    Text(f"  {addr.ip}", style="dim"),
                    "",
                    _tls_cell(addr.tls_ok, addr.tls_version, addr.probe_outcome),
                    _cert_cell(addr.cert_not_after, addr.days_to_expiry),
                )
                rows.append((*extra, "") if dane else extra)
    return rows


def _render_mx(result: CheckResult, console: Console) -> None:
    """The MX hosts: a table where it fits, else a block per host. Host names and patterns
    are never cut with "…" nor broken over lines, whatever the width."""
    rows = _mx_cells(result)
    columns = _MX + (("DANE",) if _shown_dane(result) else ())
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    if sum(widths) + 3 * len(widths) <= console.width:
        table = Table(title="MX hosts", title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    console.print(Text("MX hosts", style="italic"))
    labels = ("covered by", "STARTTLS", "certificate", "DANE")
    for row in rows:
        pref, host = row[0], row[1]
        console.print(Text(f"  {pref:>4}  ") + Text(str(host), style="bold"), soft_wrap=True)
        for label, value in zip(labels, row[2:], strict=False):
            console.print(Text(f"        {label}: ") + value, soft_wrap=True)


_MX = ("pref", "host", "covered by", "STARTTLS / TLS", "certificate")


def _dane_text(verdict: DaneVerdict | None) -> Text:
    if verdict is None or verdict.state is DaneState.NONE:
        return Text("-", style="dim")
    if verdict.state is DaneState.MATCH:
        return Text("ok", style="green")
    style = "bold red" if verdict.state.blocks_mail else "yellow"
    return Text(str(verdict.state), style=style)


def _tls_cell(ok: bool | None, version: str, outcome: str) -> Text:
    if ok is None:
        return Text("not probed", style="dim")
    if ok:
        return Text(f"ok {version}".strip(), style="green")
    return Text(outcome, style="red")


def _cert_cell(not_after: datetime | None, days: int | None) -> Text:
    if days is None:
        return Text("-", style="dim")
    style = "red" if days < 0 else "yellow" if days < 14 else ""
    when = not_after.date().isoformat() if not_after else ""
    return Text(f"{when} ({days} d)", style=style)


def _render_finding(finding: Finding, console: Console, *, verbose: bool) -> None:
    line = Text()
    line.append(f"{_MARK[finding.severity]:<9} ", style=_STYLE[finding.severity])
    line.append(finding.title, style="bold")
    if finding.subject:
        line.append(f"  [{finding.subject}]", style="dim")
    line.append(f"  ({finding.code})", style="dim")
    console.print(line)
    if finding.severity is Severity.INFO and not verbose:
        return
    console.print(Padding(Text(finding.detail), (0, 0, 0, 10)))
    console.print(Padding(Text("Fix: ", style="bold") + Text(finding.fix), (0, 0, 0, 10)))
    console.print(Padding(Text(f"See {finding.rfc}", style="dim"), (0, 0, 0, 10)))


def render_result(result: CheckResult, console: Console, *, verbose: bool = False) -> None:
    """The full report for one domain."""
    console.rule(Text(result.domain, style="bold"), align="left")
    stage = Text(str(result.stage), style=_STAGE_STYLE.get(str(result.stage), "dim"))
    console.print(Text("Stage:     ") + stage)
    console.print(Text("Senders:   ") + _effective_text(result))
    if result.sts_record:
        console.print(Text(f"TXT id:    {result.sts_record.id}"))
    if result.policy:
        policy = result.policy
        patterns = ", ".join(policy.mx) or "(none)"
        console.print(
            Text(f"Policy:    mode {policy.mode}, max_age {policy.max_age}, mx {patterns}")
        )
    console.print(
        Text(
            f"TLS-RPT:   {result.tlsrpt.state}"
            + (f" ({', '.join(result.tlsrpt.rua)})" if result.tlsrpt.rua else "")
        )
    )
    if result.mx:
        _render_mx(result, console)
    if verbose and result.policy_source is not None:
        console.print(Text("Policy file as served:", style="bold"))
        console.print(Text(result.policy_source.rstrip("\n")), style="dim")
    if not result.findings:
        console.print(Text("No findings.", style="green"))
    for finding in result.findings:
        _render_finding(finding, console, verbose=verbose)
    console.print()


def _summary_table(results: Sequence[CheckResult]) -> Table:
    table = Table(title=f"{len(results)} domains", title_justify="left", show_edge=False)
    widest = max((len(r.domain) for r in results), default=6)
    table.add_column("domain", no_wrap=True, min_width=widest)  # never cut with "…"
    for column in ("stage", "senders", "worst", "errors", "warnings"):
        table.add_column(column, overflow="fold")
    table.add_column("first problem", overflow="fold")
    for result in results:
        worst = result.worst
        counts = {s: sum(f.severity is s for f in result.findings) for s in Severity}
        top = next((f for f in result.findings if f.severity > Severity.INFO), None)
        table.add_row(
            result.domain,
            str(result.stage),
            str(result.effective.mode) if result.effective.usable else "no policy",
            Text(worst.label, style=_STYLE[worst]) if worst else Text("-"),
            str(counts[Severity.ERROR]),
            str(counts[Severity.WARNING]),
            f"{top.code} {top.subject}".strip() if top else "",
        )
    return table


def render_check_text(
    results: Sequence[CheckResult], console: Console, *, verbose: bool = False
) -> None:
    """Print results: full reports for a few domains (or all when verbose), then a summary."""
    if len(results) <= FULL_REPORTS_UP_TO or verbose:
        for result in results:
            render_result(result, console, verbose=verbose)
    if len(results) > 1:
        widest = max(len(r.domain) for r in results)
        if widest + SUMMARY_OTHER_COLUMNS <= console.width:
            console.print(_summary_table(results))
        else:  # too narrow for whole names in a table: a line each, never cut
            console.print(Text(f"{len(results)} domains", style="italic"))
            for result in results:
                render_result_line(result, console)


# --- text, a line per domain (long runs) --------------------------------------------------------


def format_result_line(result: CheckResult) -> Text:
    """One domain on one line: worst, domain, stage, what senders apply, counts, first problem."""
    worst = result.worst
    counts = {s: sum(f.severity is s for f in result.findings) for s in Severity}
    top = next((f for f in result.findings if f.severity > Severity.INFO), None)
    line = Text()
    line.append(
        f"{_MARK[worst] if worst else '✓ ok':<9} ", style=_STYLE[worst] if worst else "green"
    )
    line.append(f"{result.domain:<30}", style="bold")
    stage = str(result.stage)
    line.append(f" {stage:<9}", style=_STAGE_STYLE.get(stage, "dim"))
    senders = f"mode {result.effective.mode}" if result.effective.usable else "no policy"
    line.append(f" {senders:<13}")
    errors, warnings = counts[Severity.ERROR], counts[Severity.WARNING]
    if errors or warnings:
        line.append(
            f" {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        )
    if top is not None:
        line.append(f"  {top.code} {top.subject}".rstrip(), style="dim")
    line.rstrip()
    return line


def render_result_line(result: CheckResult, console: Console) -> None:
    console.print(format_result_line(result), soft_wrap=True)  # never wrapped: one line each


def render_tally(tally: CheckTally, console: Console) -> None:
    """The closing line of a long run: checked, clean, warnings, errors."""
    console.print(
        Text.assemble(
            f"Checked {tally.domains} domain{'s' * (tally.domains != 1)}: ",
            (f"{tally.clean} clean", "green"),
            ", ",
            (f"{tally.warnings} with warnings", "yellow" if tally.warnings else ""),
            ", ",
            (f"{tally.errors} with errors", "bold red" if tally.errors else ""),
            ".",
        ),
        soft_wrap=True,
    )
