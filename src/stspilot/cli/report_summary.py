"""``stspilot reports summary`` as text: tables where they fit, blocks where they do not.

No word is ever split over two lines and no name is cut with "…": a table is drawn only when
every column can hold its longest word; otherwise each row becomes a block (its first cell as
a heading, the others as ``label: value`` lines that wrap between words).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from stspilot.tlsrpt.summary import ReportSummary


def render_summary(s: ReportSummary, console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    for line in s.overview:
        console.print(line, markup=False, soft_wrap=True)
    if not s.reports:
        for line in s.verdict:
            console.print(line, markup=False, soft_wrap=True)
        return
    daily = Table(title="Sessions per UTC day")
    for col in ("day", "reports", "sessions", "succeeded", "failed", "failure rate"):
        daily.add_column(col, justify="left" if col == "day" else "right", no_wrap=True)
    for d in s.daily:
        rate = f"{d.failure_rate:.1%}" if d.sessions else "-"
        style = "red" if d.failed else ("dim" if not d.reports else None)
        daily.add_row(
            d.day.isoformat(),
            f"{d.reports:,}",
            f"{d.sessions:,}",
            f"{d.successful:,}",
            f"{d.failed:,}",
            rate,
            style=style,
        )
    console.print(daily)
    table_or_blocks(
        console,
        "Failures by result type: likely cause and fix",
        ("result type", "sessions", "enforce refuses", "likely cause", "fix"),
        [
            (
                r.result_type,
                f"{r.sessions:,}",
                "yes" if r.advice.refused_under_enforce else "no",
                r.advice.cause,
                r.advice.fix,
            )
            for r in s.result_types
        ],
    )
    _breakdown(console, "Failures by receiving MX", "MX host", s.by_mx)
    table_or_blocks(
        console,
        "Sending organisations",
        ("organisation", "reports", "sessions", "failed", "failure rate", "result types"),
        [
            (
                x.organization,
                f"{x.reports:,}",
                f"{x.successful + x.failed:,}",
                f"{x.failed:,}",
                f"{x.failure_rate:.1%}",
                ", ".join(f"{rt} {n:,}" for rt, n in x.result_types),
            )
            for x in s.senders
        ],
    )
    if s.authenticity is not None and s.authenticity.mailed:
        table_or_blocks(
            console,
            "Authenticity of mailed reports (DKIM, RFC 8460 §3)",
            ("organisation", "mailed", "pass", "fail", "temperror", "unsigned", "unchecked"),
            [
                (
                    a.key or "all",
                    *(f"{n:,}" for n in (a.mailed, a.verified, a.failed, a.unverifiable)),
                    f"{a.unsigned:,}",
                    f"{a.unchecked:,}",
                )
                for a in (*s.authenticity_by_sender, s.authenticity)
            ],
            caption="pass: verified · fail: does not verify · temperror: key not found (DNS) · "
            "unchecked: ingested without --verify-dkim",
        )
    _breakdown(console, "Would be refused under mode: enforce (MX)", "MX host", s.refused_mx)
    _breakdown(
        console, "Would be refused under mode: enforce (senders)", "organisation", s.refused_senders
    )
    for line in s.verdict:
        console.print(line, markup=False, style="bold", soft_wrap=True)


def _breakdown(console: Console, title: str, label: str, lines: Any) -> None:
    table_or_blocks(
        console,
        title,
        (label, "failed sessions", "result types"),
        [
            (
                b.key or "(not reported)",
                f"{b.sessions:,}",
                ", ".join(f"{rt} {n:,}" for rt, n in b.result_types),
            )
            for b in lines
        ],
    )


_NUMBER = re.compile(r"[\d,.]+%?")


def _longest_word(texts: Sequence[str]) -> int:
    return max((len(w) for t in texts for w in t.split()), default=0)


def table_or_blocks(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
) -> None:
    """``rows`` as a table when each column fits its longest word, else as blocks."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return
    # Each column needs its longest word (and its header's) plus 3 cells of border and padding.
    need = [max(_longest_word([c, *(r[i] for r in rows)]), 1) for i, c in enumerate(columns)]
    if sum(need) + 3 * len(columns) + 1 <= console.width:
        table = Table(title=title, caption=caption)
        for i, column in enumerate(columns):
            numeric = all(
                r[i].replace(",", "").replace(".", "").rstrip("%").isdigit() for r in rows
            )
            table.add_column(column, min_width=need[i], justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    console.print(Text(title, style="bold italic"))
    for row in rows:
        console.print(Text(row[0], style="bold"))
        for column, cell in zip(columns[1:], row[1:], strict=True):
            if cell:
                console.print(Padding(Text(f"{column}: {cell}"), (0, 0, 0, 4)))
    if caption:
        console.print(Text(caption, style="dim"))
