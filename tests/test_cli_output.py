"""What the CLI prints at a narrow terminal (issue 12): names are never cut, records meant to
be copied are never wrapped, words are never split, help texts are whole sentences."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from stspilot.check.evaluate import evaluate
from stspilot.check.render import FULL_REPORTS_UP_TO, LINES_FROM, render_check_text
from stspilot.cli.app import app
from stspilot.cli.check import HELP as CHECK_HELP
from stspilot.facts import TlsFailure
from test_evaluate import HEALTHY, mx, tls_fail, with_probe  # type: ignore[import-not-found]

LONG_MX = (
    "eu-west-mail-relay-01.customer-mail.protection.outlook.example.com",
    "mx2.a-rather-long-mail-provider-name.example.net",
)
LONG_DOMAIN = "a-quite-long-subsidiary-name.mail.example-holding-company.co.uk"


def narrow(draw: object, *args: object, width: int = 80, **kwargs: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    draw(*args, console, **kwargs)  # type: ignore[operator]
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 100])
def test_domain_and_mx_names_are_never_cut(width: int) -> None:
    result = evaluate(with_probe(tls_fail(TlsFailure.SELF_SIGNED))(mx(*LONG_MX)(HEALTHY)))
    one = narrow(render_check_text, [result], width=width)
    many = [replace(result, domain=f"{i}-{LONG_DOMAIN}") for i in range(FULL_REPORTS_UP_TO + 1)]
    table = narrow(render_check_text, many, width=width)
    for text in (one, table):
        assert "…" not in text
    for host in LONG_MX:
        assert host in one  # whole, on one line
    for r in many:
        assert r.domain in table


def test_check_help_states_the_output_thresholds() -> None:
    flat = " ".join(CHECK_HELP.split())
    assert f"up to {FULL_REPORTS_UP_TO} domains, a full report of each" in flat
    assert f"{FULL_REPORTS_UP_TO + 1} to {LINES_FROM - 1}, a summary table" in flat


def _commands() -> list[tuple[str, Any]]:
    """Every command and group (Typer's own click: duck-typed)."""
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: str, ctx: Any) -> None:
        found.append((path, cmd))
        for name in cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else ():
            sub = cmd.get_command(ctx, name)
            walk(sub, f"{path} {name}".strip(), type(ctx)(sub, parent=ctx))

    walk(root, "", typer.Context(root))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(), ids=lambda x: str(x) or "root")
def test_help_texts_are_whole(path: str, command: Any) -> None:
    """The line a command list shows is a whole sentence; no option help stops mid-phrase."""
    first = (command.help or "").strip().splitlines()[0]
    assert first.endswith("."), f"{path or 'stspilot'}: {first!r}"
    assert len(first) <= 100
    for param in command.params:
        text = getattr(param, "help", None) or ""
        assert not re.search(r"[,;:(]\s*$", text), f"{path} {param.name}: {text!r}"


@pytest.mark.parametrize("width", [40, 80])
def test_rollout_records_to_copy_are_never_wrapped(width: int) -> None:
    from stspilot.rollout.render import render_publication_text, render_rollout_text
    from test_rollout import assess, live  # type: ignore[import-not-found]

    long_hosts = ("mx1.eu-west.mail-relays.example-holding-company.com", LONG_MX[0])
    a = assess(live(hosts=long_hosts, patterns=long_hosts))
    plans = [a.runbooks.next_step, a.runbooks.rollback, a.runbooks.decommission]
    publications = [p for plan in plans if plan for p in plan.publications]
    assert publications
    out = narrow(render_rollout_text, a, width=width)
    lines = {line.strip() for line in out.splitlines()}
    for pub in publications:
        for record in pub.zone_lines:
            assert record in lines  # one whole line, as a zone file needs it
        for line in pub.policy_text.splitlines():
            assert line in lines
        out = narrow(render_publication_text, pub, width=width)
        assert set(pub.zone_lines) <= {line.strip() for line in out.splitlines()}


def test_reports_summary_does_not_split_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stspilot.cli import main
    from stspilot.tlsrpt.advice import advice_for

    db = str(tmp_path / "s.db")
    folder = tmp_path / "reports"
    assert main(["lab", "reports", str(folder), "-n", "60", "--domain", "example.org"]) == 0
    assert main(["ingest", str(folder), "--db", db]) == 0
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["reports", "summary", "--days", "30", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    words = set(out.split())
    shown = [
        t
        for t in ("starttls-not-supported", "certificate-expired", "validation-failure")
        if t in out
    ]
    assert shown, "the sample reports have failures"
    for result_type in shown:
        advice = advice_for(result_type)
        for word in f"{advice.cause} {advice.fix}".split():
            assert word in words or any(word in w for w in words), (result_type, word)


@pytest.mark.parametrize(
    ("env", "plain"),
    [
        ({}, True),
        ({"COLUMNS": "100"}, True),
        ({"COLUMNS": "wide"}, True),  # not a number: rich ignores it too
        ({"COLUMNS": "12"}, False),  # too narrow for the plain layout: rich's
        ({"FORCE_COLOR": "1"}, False),
        ({"TTY_COMPATIBLE": "1"}, False),
    ],
)
def test_the_plain_layout_runs_where_rich_writes_no_colour_at_riches_width(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], plain: bool
) -> None:
    """``stspilot check`` lays its text out without rich only where rich would write plain
    characters, and at the width rich would take (stdout a file: a pipe, `| less`)."""
    from stspilot.cli.check_run import plain_width

    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr("sys.stdout", stdout)
    width = plain_width()
    assert (width is not None) is plain
    if width is not None:
        console = Console()  # as TextOutput makes it: stdout's, from the environment
        assert not console.is_terminal and console.color_system is None
        assert width == console.width


def test_an_output_that_cannot_be_written_is_one_line_and_exit_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk (`> /dev/full`) ends the check with a line saying so, not a traceback."""
    import errno

    from stspilot.cli import EXIT_OPERATIONAL, check_run

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    async def checks(*_: object, **__: object) -> None:
        check_run._write_stdout("a report")

    monkeypatch.setattr(check_run, "run_checks", checks)
    monkeypatch.setattr("sys.stdout", Full())
    assert check_run.run_check_command(["example.com"]) == EXIT_OPERATIONAL
    assert "cannot write the output" in capsys.readouterr().err
