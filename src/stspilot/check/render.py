"""Check results as text for a reader (the JSON document is ``check/json_doc.py``).

The text report is a list of pieces (``_report``: a heading, lines, indented paragraphs, the
MX hosts) drawn by rich (``render_result``) or, where rich would emit no colour (stdout not a
terminal), laid out here as rich lays them out (``format_result_plain``): importing and running
rich costs a one-domain ``stspilot check`` ~30 ms of CPU, a tenth of the whole process
(``bench/peers.py --only single``). The plain layout covers what it can reproduce exactly (a
test compares it with rich's at many widths) and hands anything else back to rich: text with
characters of another width than one cell, a heading wider than the line, a summary table.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from stspilot.check.dane_verdict import DaneState, DaneVerdict
from stspilot.check.evaluate import CheckResult
from stspilot.check.json_doc import CheckTally
from stspilot.findings import Finding, Severity

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

SUMMARY_OTHER_COLUMNS = 50  # what the summary table needs beside the domain names
FULL_REPORTS_UP_TO = 3  # more domains than this: a summary table only, unless verbose
LINES_FROM = 21  # more domains than 20: a line per domain as each completes, then the tally

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_MARK = {Severity.ERROR: "✗ error", Severity.WARNING: "! warning", Severity.INFO: "i info"}
_STAGE_STYLE = {"enforce": "green", "testing": "yellow", "reporting": "cyan"}


# --- text ---------------------------------------------------------------------------------------

Span = tuple[str, str]  # a run of text and its rich style ("": none)
# A piece of a report: "rule" (the domain's heading), "line" (wrapped at the width), "pad"
# (wrapped, PAD columns in), "mx" (the MX hosts: a table where it fits), "blank".
Piece = tuple[str, tuple[Span, ...]]
PAD = 10  # the indent of a finding's detail, fix and reference
# Characters one cell wide besides printable ASCII, which the plain layout may meet (the
# catalogue's texts, the marks): anything else is laid out by rich.
_NARROW = frozenset("§─→…µ·±✗✓—┃━╇│")
_CONTROL = dict.fromkeys((7, 8, 11, 12, 13))  # dropped from text by rich (``Text``)


def _effective_span(result: CheckResult) -> Span:
    effective = result.effective
    if effective.usable:
        return (f"senders apply mode {effective.mode}", "green")
    return (f"no MTA-STS policy for senders ({effective.reason})", "dim")


def _shown_dane(result: CheckResult) -> dict[str, DaneVerdict]:
    """The DANE verdicts worth a column: none when no host publishes TLSA or DANE could not be
    judged for any (no usable trust anchor), so a column of "-" does not crowd the table (the
    JSON keeps every verdict)."""
    quiet = (DaneState.NOT_CHECKED, DaneState.NONE)
    if all(verdict.state in quiet for verdict in result.dane):
        return {}
    return {verdict.host: verdict for verdict in result.dane}


def _mx_cells(result: CheckResult) -> list[tuple[Span, ...]]:
    dane = _shown_dane(result)
    has_policy = result.policy is not None and result.effective.usable
    rows = []
    for mx in result.mx:
        if not has_policy:
            covered = ("-", "dim")
        elif mx.covered_by:
            covered = (mx.covered_by, "green")
        else:
            covered = ("NOT COVERED", "bold red")
        tls = _tls_span(mx.tls_ok, mx.tls_version, mx.probe_outcome)
        cert = _cert_span(mx.cert_not_after, mx.days_to_expiry)
        cells: tuple[Span, ...] = ((str(mx.preference), ""), (mx.host, ""), covered, tls, cert)
        if dane:
            cells = (*cells, _dane_span(dane.get(mx.host)))
        rows.append(cells)
        if len(mx.addresses) > 1:  # every address was probed (RFC 8461 §4.2): show each
            for addr in mx.addresses:
                extra: tuple[Span, ...] = (
                    ("", ""),
                    (f"  {addr.ip}", "dim"),
                    ("", ""),
                    _tls_span(addr.tls_ok, addr.tls_version, addr.probe_outcome),
                    _cert_span(addr.cert_not_after, addr.days_to_expiry),
                )
                rows.append((*extra, ("", "")) if dane else extra)
    return rows


_MX = ("pref", "host", "covered by", "STARTTLS / TLS", "certificate")
_MX_LABELS = ("covered by", "STARTTLS", "certificate", "DANE")


def _mx_layout(result: CheckResult, width: int) -> tuple[list[tuple[Span, ...]], list[int] | None]:
    """The MX rows, and the column widths when the table fits ``width`` (None: a block per
    host). Host names and patterns are never cut with "…" nor broken over lines."""
    rows = _mx_cells(result)
    columns = _MX + (("DANE",) if _shown_dane(result) else ())
    widths = [max([len(c), *(len(row[i][0]) for row in rows)]) for i, c in enumerate(columns)]
    return rows, widths if sum(widths) + 3 * len(widths) <= width else None


def _render_mx(result: CheckResult, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    rows, widths = _mx_layout(result, console.width)
    if widths is not None:
        columns = _MX + (("DANE",) if len(widths) > len(_MX) else ())
        table = Table(title="MX hosts", title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*(Text(text, style=style) for text, style in row))
        console.print(table)
        return
    console.print(Text("MX hosts", style="italic"))
    for row in rows:
        pref, host = row[0][0], row[1][0]
        console.print(Text(f"  {pref:>4}  ") + Text(host, style="bold"), soft_wrap=True)
        for label, (value, style) in zip(_MX_LABELS, row[2:], strict=False):
            line = Text(f"        {label}: ") + Text(value, style=style)
            console.print(line, soft_wrap=True)


def _plain_mx(result: CheckResult, width: int) -> list[str]:
    """``_render_mx`` as rich lays it out without colour: the table (no outer edge, a heavy
    rule under the header) or a block per host."""
    rows, widths = _mx_layout(result, width)
    if widths is None:
        lines = ["MX hosts"]
        for row in rows:
            lines.append(f"  {row[0][0]:>4}  {row[1][0]}")
            lines += [
                f"        {label}: {value}"
                for label, (value, _) in zip(_MX_LABELS, row[2:], strict=False)
            ]
        return lines
    columns = _MX + (("DANE",) if len(widths) > len(_MX) else ())
    total = sum(widths) + 3 * (len(widths) - 1)

    def line(cells: Sequence[str], bar: str) -> str:
        padded = [cell + " " * (w - len(cell)) for cell, w in zip(cells, widths, strict=True)]
        return f" {bar} ".join(padded)

    rule = "╇".join("━" * (w + 2) for w in widths)[1:-1]
    return [
        "MX hosts".ljust(total),
        line(columns, "┃"),
        rule,
        *(line([text for text, _ in row], "│") for row in rows),
    ]


def _dane_span(verdict: DaneVerdict | None) -> Span:
    if verdict is None or verdict.state is DaneState.NONE:
        return ("-", "dim")
    if verdict.state is DaneState.MATCH:
        return ("ok", "green")
    return (str(verdict.state), "bold red" if verdict.state.blocks_mail else "yellow")


def _tls_span(ok: bool | None, version: str, outcome: str) -> Span:
    if ok is None:
        return ("not probed", "dim")
    if ok:
        return (f"ok {version}".strip(), "green")
    return (outcome, "red")


def _cert_span(not_after: datetime | None, days: int | None) -> Span:
    if days is None:
        return ("-", "dim")
    style = "red" if days < 0 else "yellow" if days < 14 else ""
    when = not_after.date().isoformat() if not_after else ""
    return (f"{when} ({days} d)", style)


def _finding_pieces(finding: Finding, *, verbose: bool) -> list[Piece]:
    head: list[Span] = [
        (f"{_MARK[finding.severity]:<9} ", _STYLE[finding.severity]),
        (finding.title, "bold"),
    ]
    if finding.subject:
        head.append((f"  [{finding.subject}]", "dim"))
    head.append((f"  ({finding.code})", "dim"))
    pieces: list[Piece] = [("line", tuple(head))]
    if finding.severity is Severity.INFO and not verbose:
        return pieces
    return [
        *pieces,
        ("pad", ((finding.detail, ""),)),
        ("pad", (("Fix: ", "bold"), (finding.fix, ""))),
        ("pad", ((f"See {finding.rfc}", "dim"),)),
    ]


def _report(result: CheckResult, *, verbose: bool) -> list[Piece]:
    """The full report for one domain, as pieces for either layout."""
    stage = str(result.stage)
    pieces: list[Piece] = [
        ("rule", ((result.domain, "bold"),)),
        ("line", (("Stage:     ", ""), (stage, _STAGE_STYLE.get(stage, "dim")))),
        ("line", (("Senders:   ", ""), _effective_span(result))),
    ]
    if result.sts_record:
        pieces.append(("line", ((f"TXT id:    {result.sts_record.id}", ""),)))
    if result.policy:
        policy = result.policy
        patterns = ", ".join(policy.mx) or "(none)"
        text = f"Policy:    mode {policy.mode}, max_age {policy.max_age}, mx {patterns}"
        pieces.append(("line", ((text, ""),)))
    rua = f" ({', '.join(result.tlsrpt.rua)})" if result.tlsrpt.rua else ""
    pieces.append(("line", ((f"TLS-RPT:   {result.tlsrpt.state}{rua}", ""),)))
    if result.mx:
        pieces.append(("mx", ()))
    if verbose and result.policy_source is not None:
        pieces.append(("line", (("Policy file as served:", "bold"),)))
        pieces.append(("line", ((result.policy_source.rstrip("\n"), "dim"),)))
    if not result.findings:
        pieces.append(("line", (("No findings.", "green"),)))
    for finding in result.findings:
        pieces += _finding_pieces(finding, verbose=verbose)
    pieces.append(("blank", ()))
    return pieces


def _rich_text(spans: Sequence[Span]) -> Text:
    from rich.text import Text

    return Text.assemble(*spans)


def render_result(result: CheckResult, console: Console, *, verbose: bool = False) -> None:
    """The full report for one domain."""
    from rich.padding import Padding

    for kind, spans in _report(result, verbose=verbose):
        if kind == "rule":
            console.rule(_rich_text(spans), align="left")
        elif kind == "line":
            console.print(_rich_text(spans))
        elif kind == "pad":
            console.print(Padding(_rich_text(spans), (0, 0, 0, PAD)))
        elif kind == "mx":
            _render_mx(result, console)
        else:
            console.print()


# --- text without rich --------------------------------------------------------------------------


def _plain_ok(text: str) -> bool:
    """Every character one cell wide, as rich measures it (or a line break)."""
    return all(" " <= c <= "~" or c == "\n" or c in _NARROW for c in text)


_WORD = re.compile(r"\s*\S+\s*")


def _divide_line(text: str, width: int) -> list[int]:
    """Where rich breaks a line of one-cell characters (``rich._wrap.divide_line``, folding
    words longer than the width)."""
    breaks: list[int] = []
    offset = 0
    for match in _WORD.finditer(text):
        start, word = match.start(), match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:  # folded over lines of the width
            chunks = [word[i : i + width] for i in range(0, len(word), width)]
            for n, chunk in enumerate(chunks):
                if start:
                    breaks.append(start)
                if n == len(chunks) - 1:
                    offset = len(chunk)
                else:
                    start += len(chunk)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    return breaks


def _wrap(text: str, width: int) -> list[str]:
    """``text`` as rich wraps a ``Text`` at ``width`` (overflow "fold")."""
    lines = []
    for line in text.split("\n"):
        bounds = [0, *_divide_line(line, width), len(line)]
        for a, b in itertools.pairwise(bounds):
            piece = line[a:b]
            if len(piece) > width:  # whitespace past the width goes, then the rest is cut
                spaces = len(piece) - len(piece.rstrip())
                piece = piece[: len(piece) - min(spaces, len(piece) - width)][:width]
            lines.append(piece)
    return lines


def format_result_plain(result: CheckResult, width: int, *, verbose: bool = False) -> str | None:
    """``render_result`` as rich writes it to a ``width``-column file without colour, laid
    out without rich; None when only rich can lay it out exactly (see the module's note)."""
    if width <= PAD + 2:
        return None
    out: list[str] = []
    for kind, spans in _report(result, verbose=verbose):
        text = "".join(t for t, _ in spans).translate(_CONTROL)
        if not _plain_ok(text):
            return None
        if kind == "rule":
            if "\n" in text or len(text) > width - 2:  # rich would shorten it with "…"
                return None
            out.append(text + " " + "─" * (width - len(text) - 1))
        elif kind == "line":
            out += _wrap(text, width)
        elif kind == "pad":
            inner = width - PAD
            out += [" " * PAD + line.ljust(inner) for line in _wrap(text, inner)]
        elif kind == "mx":
            mx = _plain_mx(result, width)
            if not all(map(_plain_ok, mx)):
                return None
            out += mx
        else:
            out.append("")
    return "\n".join(out) + "\n"


def format_check_plain(
    results: Sequence[CheckResult], width: int, *, verbose: bool = False
) -> str | None:
    """``render_check_text`` without rich, for one domain (None: rich lays it out)."""
    if len(results) != 1:
        return None  # none, or a summary table: rich's
    return format_result_plain(results[0], width, verbose=verbose)


def _summary_table(results: Sequence[CheckResult]) -> Table:
    from rich.table import Table
    from rich.text import Text

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
    from rich.text import Text

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


def _line_spans(result: CheckResult) -> list[Span]:
    worst = result.worst
    counts = {s: sum(f.severity is s for f in result.findings) for s in Severity}
    top = next((f for f in result.findings if f.severity > Severity.INFO), None)
    stage = str(result.stage)
    senders = f"mode {result.effective.mode}" if result.effective.usable else "no policy"
    spans: list[Span] = [
        (f"{_MARK[worst] if worst else '✓ ok':<9} ", _STYLE[worst] if worst else "green"),
        (f"{result.domain:<30}", "bold"),
        (f" {stage:<9}", _STAGE_STYLE.get(stage, "dim")),
        (f" {senders:<13}", ""),
    ]
    errors, warnings = counts[Severity.ERROR], counts[Severity.WARNING]
    if errors or warnings:
        spans.append(
            (f" {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}", "")
        )
    if top is not None:
        spans.append((f"  {top.code} {top.subject}".rstrip(), "dim"))
    return spans


def format_result_line(result: CheckResult) -> Text:
    """One domain on one line: worst, domain, stage, what senders apply, counts, first problem."""
    line = _rich_text(_line_spans(result))
    line.rstrip()
    return line


def format_result_line_plain(result: CheckResult) -> str | None:
    """``render_result_line`` without rich (never wrapped); None: rich's."""
    text = "".join(t for t, _ in _line_spans(result)).translate(_CONTROL).rstrip()
    return text + "\n" if _plain_ok(text) and "\n" not in text else None


def render_result_line(result: CheckResult, console: Console) -> None:
    console.print(format_result_line(result), soft_wrap=True)  # never wrapped: one line each


def _tally_spans(tally: CheckTally) -> list[Span]:
    return [
        (f"Checked {tally.domains} domain{'s' * (tally.domains != 1)}: ", ""),
        (f"{tally.clean} clean", "green"),
        (", ", ""),
        (f"{tally.warnings} with warnings", "yellow" if tally.warnings else ""),
        (", ", ""),
        (f"{tally.errors} with errors", "bold red" if tally.errors else ""),
        (".", ""),
    ]


def format_tally_plain(tally: CheckTally) -> str:
    """``render_tally`` without rich."""
    return "".join(t for t, _ in _tally_spans(tally)) + "\n"


def render_tally(tally: CheckTally, console: Console) -> None:
    """The closing line of a long run: checked, clean, warnings, errors."""
    console.print(_rich_text(_tally_spans(tally)), soft_wrap=True)
