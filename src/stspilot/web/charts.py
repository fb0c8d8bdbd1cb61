"""Dashboard charts: report aggregates shaped into series and rendered as inline SVG by pygal.

pygal draws on the server, so a chart is part of the HTML: it needs no JavaScript, no CDN and
no second request, and works offline (docs/dashboard.md says why pygal). Its tooltip script
(loaded from a CDN by default) is switched off and its inline config script removed; the
dashboard's own ``static/dashboard.js`` adds hover titles as progressive enhancement.
Labels come from reports (hostile input): pygal writes them through an XML serialiser, which
escapes them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from stspilot.tlsrpt.summary import DailyTotal, FailureCount

MAX_DAYS = 366  # one year of daily bars is as wide as a chart can usefully be
WEEKLY_AFTER = 90  # longer windows are drawn one bar per week (730 daily bars cost ~0.5 s)
MAX_BARS = 12  # result types (or MX, senders) shown; the rest are summed into "other"
OK_COLOUR, FAILED_COLOUR = "#2e7d32", "#c62828"
_PALETTE = ("#c62828", "#ef6c00", "#6a1b9a", "#1565c0", "#00838f", "#9e9d24", "#4e342e")
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


@dataclass(frozen=True, slots=True)
class DailySeries:
    """Sessions per UTC day (RFC 8460 §4.4 summaries), every day of the window present."""

    days: tuple[date, ...]  # each bar's first day
    successful: tuple[int, ...]
    failed: tuple[int, ...]
    step: int = 1  # days per bar

    @property
    def sessions(self) -> int:
        return sum(self.successful) + sum(self.failed)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    """Failed sessions under one key (a result type, MX host or sender) and by result type."""

    key: str
    sessions: int
    result_types: tuple[tuple[str, int], ...]


def daily_series(totals: Iterable[DailyTotal], *, first: date, last: date) -> DailySeries:
    """The daily totals of ``[first, last]`` (inclusive) with zero days filled in, summed
    over policy domains; at most ``MAX_DAYS`` days, the most recent ones."""
    if last < first:
        first, last = last, first
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    ok: dict[date, int] = {}
    bad: dict[date, int] = {}
    for t in totals:
        if first <= t.day <= last:
            ok[t.day] = ok.get(t.day, 0) + t.successful
            bad[t.day] = bad.get(t.day, 0) + t.failed
    days = tuple(first + timedelta(days=i) for i in range((last - first).days + 1))
    return DailySeries(days, tuple(ok.get(d, 0) for d in days), tuple(bad.get(d, 0) for d in days))


def weekly(series: DailySeries) -> DailySeries:
    """The series summed into 7-day bars ending on its last day (the oldest bar may be
    shorter), each labelled by its first day: the same sessions in a seventh of the bars."""
    if series.step != 1 or not series.days:
        return series
    n = len(series.days)
    starts: list[date] = []
    ok: list[int] = []
    bad: list[int] = []
    for end in range(n, 0, -7):  # newest bar first, then reversed
        begin = max(0, end - 7)
        starts.append(series.days[begin])
        ok.append(sum(series.successful[begin:end]))
        bad.append(sum(series.failed[begin:end]))
    return DailySeries(tuple(starts[::-1]), tuple(ok[::-1]), tuple(bad[::-1]), step=7)


def breakdown(rows: Iterable[FailureCount], *, limit: int = 50) -> tuple[BreakdownRow, ...]:
    """Failure counts grouped by their key, largest first, each with its result types.

    One session may be counted under several result types (RFC 8460 §4.3), so a key's
    sessions are the sum of what its details report, as the store's aggregates are.
    """
    by_key: dict[str, dict[str, int]] = {}
    for r in rows:
        types = by_key.setdefault(r.key, {})
        types[r.result_type] = types.get(r.result_type, 0) + r.sessions
    out = [
        BreakdownRow(
            key,
            sum(types.values()),
            tuple(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        for key, types in by_key.items()
    ]
    out.sort(key=lambda b: (-b.sessions, b.key))
    return tuple(out[: max(0, limit)])


def top_with_other(
    pairs: Sequence[tuple[str, int]], limit: int = MAX_BARS
) -> list[tuple[str, int]]:
    """The largest ``limit - 1`` entries and the rest summed as "other" (a readable chart)."""
    ranked = sorted(pairs, key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) <= limit:
        return ranked
    head, tail = ranked[: limit - 1], ranked[limit - 1 :]
    return [*head, ("other", sum(n for _, n in tail))]


# --- rendering ---------------------------------------------------------------------------------


def _pygal() -> Any:
    """pygal, imported on first use (it ships no type information)."""
    import pygal  # type: ignore[import-untyped]

    # pygal appends a legacy finder to sys.meta_path (for its map plugins, unused here) that
    # has no find_spec: every later failed import in the process then warns (ImportWarning).
    # Take it out again; importing pygal once more does not re-add it.
    fixer = getattr(pygal, "PluginImportFixer", None)
    if fixer is not None and any(isinstance(f, fixer) for f in sys.meta_path):
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, fixer)]
    return pygal


def _style(colours: Sequence[str]) -> Any:
    return _pygal().style.Style(
        background="transparent",
        plot_background="#ffffff",
        foreground="#1b1f24",
        foreground_strong="#1b1f24",
        foreground_subtle="#57606a",
        colors=tuple(colours),
        font_family="system-ui, sans-serif",
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=12,
        title_font_size=14,
        opacity=".85",
        opacity_hover="1",
        transition="0ms",
    )


def _svg(chart: Any) -> str:
    """The chart as inline SVG markup: no XML declaration, no script, no comments."""
    svg = str(chart.render(is_unicode=True))
    return _COMMENT.sub("", _SCRIPT.sub("", svg))


def _common() -> dict[str, Any]:
    # js=[]: pygal would otherwise reference its tooltip script on a CDN (offline first).
    return {
        "js": [],
        "disable_xml_declaration": True,
        "explicit_size": False,
        "legend_at_bottom": True,
        "no_data_text": "No reports in this window",
        "margin": 12,
        "print_zeroes": False,
    }


def sessions_chart(
    series: DailySeries, *, title: str = "Sessions per day", per_week: bool | None = None
) -> str:
    """Successful and failed sessions per day, stacked (failures on top, in red); one bar
    per week when ``per_week``, by default past ``WEEKLY_AFTER`` days (the title says so)."""
    pygal = _pygal()

    if per_week is None:
        per_week = len(series.days) > WEEKLY_AFTER
    if per_week:
        series = weekly(series)
        title = title.replace("per day", "per week")

    chart = pygal.StackedBar(
        style=_style((OK_COLOUR, FAILED_COLOUR)),
        width=960,
        height=320,
        title=title,
        x_label_rotation=-45 if len(series.days) > 14 else 0,
        show_minor_x_labels=len(series.days) <= 31,
        truncate_label=10,
        **_common(),
    )
    labels = [d.isoformat() for d in series.days]
    chart.x_labels = labels
    if len(labels) > 31:
        chart.x_labels_major = labels[:: max(1, len(labels) // 12)]
    if series.sessions:
        chart.add("successful", list(series.successful))
        chart.add("failed", list(series.failed))
    return _svg(chart)


def result_type_chart(
    pairs: Sequence[tuple[str, int]], *, title: str = "Failed sessions by result type"
) -> str:
    """Failed sessions per result type (RFC 8460 §4.3), largest first, one bar each."""
    pygal = _pygal()

    shown = top_with_other(pairs)
    chart = pygal.HorizontalBar(
        style=_style(_PALETTE),
        width=960,
        height=max(160, 60 + 34 * len(shown)),
        title=title,
        show_legend=True,
        print_values=True,
        print_values_position="top",
        value_formatter=lambda v: f"{v:,.0f}",
        **_common(),
    )
    for name, n in reversed(shown):  # pygal draws the first series at the bottom
        chart.add(name[:60], [n])
    return _svg(chart)


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage for people: "0.52 %", "<0.01 %", or "" for 0."""
    if not whole or not part:
        return ""
    value = 100.0 * part / whole
    return "<0.01 %" if value < 0.01 else f"{value:.2f} %"


def failure_rates(series: DailySeries) -> list[float | None]:
    """Failed sessions per 100 sessions of each bar; None for a bar without sessions."""
    return [
        round(100.0 * bad / (ok + bad), 3) if ok + bad else None
        for ok, bad in zip(series.successful, series.failed, strict=True)
    ]


def rate_chart(
    series: DailySeries, *, title: str = "Failure rate per day", per_week: bool | None = None
) -> str:
    """The failure rate (failed sessions per 100) per day, with the sessions per day on a
    secondary axis: 0.5 % of failures is a visible line, not an invisible red sliver of a
    stacked bar. One point per week past ``WEEKLY_AFTER`` days, as ``sessions_chart``."""
    pygal = _pygal()

    if per_week is None:
        per_week = len(series.days) > WEEKLY_AFTER
    if per_week:
        series = weekly(series)
        title = title.replace("per day", "per week")
    chart = pygal.Line(
        style=_style((FAILED_COLOUR, "#8c959f")),
        width=960,
        height=320,
        title=title,
        x_label_rotation=-45 if len(series.days) > 14 else 0,
        show_minor_x_labels=len(series.days) <= 31,
        truncate_label=10,
        dots_size=2.5,
        value_formatter=lambda v: f"{v:.2f} %",
        secondary_range=None,
        range=(0, max(1.0, max((r or 0.0 for r in failure_rates(series)), default=0.0) * 1.15)),
        **_common(),
    )
    labels = [d.isoformat() for d in series.days]
    chart.x_labels = labels
    if len(labels) > 31:
        chart.x_labels_major = labels[:: max(1, len(labels) // 12)]
    if series.sessions:
        chart.add("failure rate (%)", failure_rates(series), stroke_style={"width": 2.5})
        volume = [ok + bad for ok, bad in zip(series.successful, series.failed, strict=True)]
        chart.add(
            "sessions (right axis)",
            volume,
            secondary=True,
            show_dots=False,
            fill=True,
            formatter=lambda v: f"{v:,.0f} sessions",
        )
    return _svg(chart)


def sparkline(series: DailySeries, *, width: int = 84, height: int = 20) -> str:
    """A tiny inline SVG of a domain's days: a grey bar per day for its sessions (scaled to
    the busiest day) and a red one over it for the failed share; an empty day is a gap.
    Drawn by hand: pygal costs ~5 ms a chart, and an inventory page shows 50 of them."""
    n = len(series.days)
    if n == 0:
        return ""
    busiest = max((ok + bad for ok, bad in zip(series.successful, series.failed, strict=True)),
                  default=0)  # fmt: skip
    step = width / n
    bar = max(1.0, step - 1)
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="sessions and failures per day">'
    ]
    for i, (ok, bad) in enumerate(zip(series.successful, series.failed, strict=True)):
        total = ok + bad
        if not total:
            continue
        x = i * step
        h = max(1.0, height * total / busiest) if busiest else 0.0
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            'fill="#afb8c1"/>'
        )
        if bad:
            # The failed share of the bar, at least a pixel: a rare failure stays visible.
            fh = max(1.5, h * bad / total)
            parts.append(
                f'<rect x="{x:.1f}" y="{height - fh:.1f}" width="{bar:.1f}" height="{fh:.1f}" '
                f'fill="{FAILED_COLOUR}"><title>{series.days[i]}: {bad:,} of {total:,} '
                "failed</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)
