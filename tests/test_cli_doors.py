"""One behaviour per door: every command that takes a domain applies one rule, prints one
line and exits 3 (usage) for a name that is no domain (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stspilot.cli import EXIT_USAGE, main

# Each command line takes the domain as its last argument.
DOORS = [
    ["check"],
    ["check", "--json"],
    ["generate", "--mx", "mx.example.com", "--no-probe"],
    ["rollout", "--no-save"],
    ["monitor", "add"],
    ["monitor", "remove"],
    ["monitor", "alerts"],
    ["monitor", "check"],
    ["host", "add", "--tenant", "acme"],
    ["host", "decommission"],
    ["host", "remove"],
    ["reports", "summary"],
    ["reports", "list"],
]
NOT_DOMAINS = {
    "192.0.2.1": "an IP address, not a name",
    "[2001:db8::1]": "an IP address, not a name",
    "example..com": "an empty label",
    "https://example.com/": "only letters, digits and inner hyphens",
}


@pytest.mark.parametrize("door", DOORS, ids=lambda d: " ".join(d[:2]))
@pytest.mark.parametrize("text", sorted(NOT_DOMAINS))
def test_an_invalid_domain_is_one_line_and_exit_3_at_every_door(
    door: list[str], text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(tmp_path / "s.db")] if door[0] not in ("check", "generate") else []
    assert main([*door, *db, text]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"stspilot: not a domain name: {text!r}")
    assert NOT_DOMAINS[text] in err
    assert not (tmp_path / "s.db").exists()  # refused at the door, before any store
