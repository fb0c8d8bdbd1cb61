"""The conventions people expect from a CLI (issue 12): --version, -h, -q/-v/--log-level,
shell completion."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stspilot import __version__
from stspilot.cli import EXIT_OK, EXIT_USAGE, main


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out == f"stspilot {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [["-h"], ["check", "-h"], ["monitor", "-h"], ["monitor", "run", "-h"], ["host", "add", "-h"]],
)
def test_dash_h_is_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_OK
    assert "Usage: stspilot" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["-q"], logging.ERROR),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["--log-level", "debug"], logging.DEBUG),
        (["--log-level", "WARNING"], logging.WARNING),
        ([], logging.WARNING),
    ],
)
def test_log_level_options(argv: list[str], level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STSPILOT_LOG_LEVEL", raising=False)
    assert main([*argv, "version"]) == EXIT_OK
    assert logging.getLogger().level == level


def test_log_level_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STSPILOT_LOG_LEVEL", "info")
    assert main(["version"]) == EXIT_OK
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize("argv", [["-q", "-v"], ["--log-level", "loud"]])
def test_bad_log_options_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "version"]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1


def test_shell_completion_is_on() -> None:
    # `--show-completion` takes no shell name: Typer asks shellingham for the shell the command
    # runs under, from the process's ancestors. Run it from bash, as a user would, so the
    # answer does not depend on what started pytest (a runner under sh, or reparented to init
    # after its parent exited, made this fail with "Shell sh not supported", exit 1).
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    shown = subprocess.run(
        [bash, "-c", 'out=$("$0" -m stspilot --show-completion) || exit; printf %s "$out"',
         sys.executable],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    script = shown.stdout
    assert "_stspilot_completion" in script
    env = {
        **os.environ,
        "_STSPILOT_COMPLETE": "complete_bash",
        "COMP_WORDS": "stspilot check --no-mx",
        "COMP_CWORD": "2",
    }
    words = subprocess.run(
        [sys.executable, "-m", "stspilot"], env=env, capture_output=True, text=True
    ).stdout
    assert words.split() == ["--no-mx-probe"]


JSON_COMMANDS = [
    ["reports", "summary"],
    ["reports", "list"],
    ["reports", "quarantine"],
    ["reports", "retry"],
    ["monitor", "list"],
    ["monitor", "alerts"],
    ["monitor", "run", "--once"],
    ["host", "list"],
    ["tenant", "list"],
    ["user", "list"],
    ["lab", "scenarios"],
]


@pytest.mark.parametrize("argv", JSON_COMMANDS, ids=" ".join)
def test_json_is_one_document(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.db")
    assert main(["tenant", "add", "acme", "--db", db]) == EXIT_OK  # the store exists
    capsys.readouterr()
    extra = [] if argv[0] == "lab" else ["--db", db]
    assert main([*argv, *extra, "--json"]) == EXIT_OK
    out = capsys.readouterr().out
    document = json.loads(out)  # the whole output is one document (JSON lines would not parse)
    assert isinstance(document, list | dict)
