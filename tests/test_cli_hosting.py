"""``stspilot host ...``: hosted policies from the command line, `host set` included."""

from __future__ import annotations

import json

import pytest

from stspilot.cli import EXIT_OK, EXIT_USAGE, main
from stspilot.store import Store
from stspilot.store.hosting import HostedPolicies

pytestmark = pytest.mark.db


def test_host_set_changes_mode_mx_and_max_age(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", store_url]
    assert main(["tenant", "add", "acme", *db]) == EXIT_OK
    assert (
        main(["host", "add", "Example.COM.", "--tenant", "acme", "--mx", "mx1.example.com", *db])
        == 0
    )
    first = capsys.readouterr().out
    assert "example.com\tacme\ttesting" in first

    argv = ["host", "set", "example.com", "--mode", "enforce", "--max-age", "604800"]
    assert main([*argv, "--mx", "mx1.example.com", "--mx", "*.mail.example.net", *db]) == 0
    out = capsys.readouterr().out
    assert "\tenforce\t" in out and 'publish: _mta-sts.example.com. TXT "v=STSv1; id=' in out
    with Store.open(store_url) as store:
        hosted = HostedPolicies(store).require("example.com")
    assert (hosted.mode, hosted.max_age) == ("enforce", 604800)
    assert list(hosted.mx) == ["mx1.example.com", "*.mail.example.net"]
    assert hosted.policy_id not in first  # a changed policy has a new id

    # The same values again: nothing changes, nothing to publish.
    assert main(["host", "set", "example.com", "--mode", "enforce", *db]) == 0
    assert "nothing to publish" in capsys.readouterr().out
    assert main(["host", "list", "--json", *db]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["policy_id"] == hosted.policy_id


def test_host_set_needs_something_to_change(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["host", "set", "example.com", "--db", store_url]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("stspilot: nothing to change")


def test_host_set_of_a_domain_not_hosted(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tenant", "add", "acme", "--db", store_url]) == 0
    assert main(["host", "set", "example.com", "--mode", "enforce", "--db", store_url]) == 4
    assert "example.com" in capsys.readouterr().err
