"""The CLI's top level: fixed exit codes, one line per error, no traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stspilot.cli import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    main,
)
from stspilot.cli.app import app
from stspilot.errors import ConfigError


@pytest.fixture
def extra_command() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Register a throw-away command on the root app, removed afterwards."""
    before = list(app.registered_commands)

    def add(func: Callable[[], None]) -> None:
        app.command("boom")(func)

    yield add
    app.registered_commands[:] = before


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == EXIT_OK
    assert capsys.readouterr().out.strip()


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == EXIT_USAGE
    assert "no-such-command" in capsys.readouterr().err


def test_expected_errors_are_one_line(
    extra_command: Callable[[Callable[[], None]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise ConfigError("the option --x is wrong")

    extra_command(boom)
    assert main(["boom"]) == EXIT_OPERATIONAL
    err = capsys.readouterr().err
    assert err == "stspilot: the option --x is wrong\n"


def test_bugs_are_internal_errors_without_traceback(
    extra_command: Callable[[Callable[[], None]], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom() -> None:
        raise RuntimeError("unexpected")

    monkeypatch.delenv("STSPILOT_DEBUG", raising=False)
    extra_command(boom)
    assert main(["boom"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: unexpected" in err and "Traceback" not in err
