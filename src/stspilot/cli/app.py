"""The root ``stspilot`` Typer app: every command, registered in one place.

Importing a command module is cheap (Typer and the module's own options); each command imports
the library it drives when it runs.
"""

from __future__ import annotations

import typer

from stspilot.cli import (
    LOG_LEVEL_ENV,
    UsageError,
    check,
    configure_logging,
    generate,
    hosting,
    ingest,
    lab,
    monitor,
    publish,
    receive,
    reports,
    rollout,
    serve,
    users,
)

app = typer.Typer(
    name="stspilot",
    help="Take a mail domain from no MTA-STS to mode: enforce without losing mail.",
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell.
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from stspilot import __version__

        typer.echo(f"stspilot {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="print the version and exit"
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="log errors only"),
    verbose: int = typer.Option(
        0, "-v", "--verbose", count=True, help="log more (-v: info, -vv: debug)"
    ),
    log_level: str | None = typer.Option(
        None,
        "--log-level",
        help=f"debug, info, warning, error or critical (default: ${LOG_LEVEL_ENV} or warning)",
    ),
) -> None:
    """Take a mail domain from no MTA-STS to mode: enforce without losing mail."""
    if quiet and verbose:
        raise UsageError("give -q or -v, not both")
    configure_logging(log_level, quiet=quiet, verbose=verbose)


@app.command()
def version() -> None:
    """Print the stspilot version."""
    from stspilot import __version__

    typer.echo(__version__)


# The order here is the order of `stspilot --help`.
for _module in (
    check,
    generate,
    rollout,
    ingest,
    reports,
    receive,
    serve,
    users,
    hosting,
    monitor,
    lab,
    publish,
):
    _module.register(app)
