"""`stspilot check` loads only what a check needs before its first packet (issue 14).

Not a timing test: a fresh interpreter runs the real command with an audit hook that, at the
first socket send or connect, writes the loaded modules and ends the process. The figure is
printed by ``bench/check_bench.py`` (start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from stspilot.cli.app import app
from stspilot.cli.check_run import FAST_OPTIONS, fast_check

HOOK = """
import json, os, sys
def hook(event, args):
    if event in ("socket.sendto", "socket.connect", "socket.sendmsg"):
        print(json.dumps(sorted(sys.modules)), file=sys.__stdout__, flush=True)
        os._exit(0)
sys.addaudithook(hook)
from stspilot.cli import main
sys.exit(main(sys.argv[1:]))
"""

# Heavy stacks a check does not need before it asks its first question.
NOT_BEFORE_FIRST_PACKET = ("sqlalchemy", "starlette", "fastapi", "uvicorn", "rich", "typer")


def modules_at_first_packet(tmp_path: Path, *args: str) -> set[str]:
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    # Port 9 (discard) on loopback: the packet is never answered, the hook ends the run first.
    argv = [sys.executable, str(script), "check", "--nameserver", "127.0.0.1:9", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.stdout, f"no packet was sent (exit {done.returncode}): {done.stderr}"
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "args",
    [
        ("example.com",),
        ("--no-mx-probe", "--json", "example.com", "example.org"),
        ("--jsonl", "--timeout", "3", "-v", "example.com"),
    ],
)
def test_check_loads_no_heavy_stack_before_the_first_packet(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    loaded = modules_at_first_packet(tmp_path, *args)
    assert "stspilot.check.run" in loaded  # the check itself did start
    heavy = sorted(m for m in loaded if m.split(".")[0] in NOT_BEFORE_FIRST_PACKET)
    assert heavy == []
    # Nor what the answers need: dnspython's message and name code (answers are read by
    # probes/dnswire.py; DNSSEC answers by dnspython, later), cryptography, h11, the findings.
    later = ("dns.message", "dns.name", "dns.resolver", "dns.dnssec", "cryptography", "h11")
    assert sorted(m for m in loaded if m.startswith(later)) == []
    assert "stspilot.findings" not in loaded and "stspilot.probes.dane" not in loaded


def test_fast_path_and_typer_declare_the_same_options() -> None:
    """The fast parser (cli/check_run.py) and the Typer command (cli/check.py) cannot drift."""
    command = typer.main.get_command(app).commands["check"]  # type: ignore[attr-defined]
    typer_options = {
        p.name: (tuple(sorted(p.opts)), p.default, getattr(p, "min", None), getattr(p, "max", None))
        for p in command.params
        if p.param_type_name == "option"
    }
    fast_options = {o.dest: (tuple(sorted(o.flags)), o.default, o.min, o.max) for o in FAST_OPTIONS}
    assert fast_options == typer_options


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h", "example.com"],
        ["--no-such-option", "example.com"],
        ["--concurrency", "0", "example.com"],  # out of range: Typer names the bounds
        ["--timeout", "soon", "example.com"],
        ["--conc", "5", "example.com"],  # no abbreviations, as in click
    ],
)
def test_fast_path_hands_what_it_does_not_take_to_typer(args: list[str]) -> None:
    assert fast_check(args) is None
