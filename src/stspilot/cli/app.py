"""The root ``stspilot`` Typer app: every command, registered in one place.

Importing a command module is cheap (Typer and the module's own options); each command imports
the library it drives when it runs.
"""

from __future__ import annotations

import typer

from stspilot.cli import (
    check,
    generate,
    hosting,
    ingest,
    lab,
    monitor,
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
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Take a mail domain from no MTA-STS to mode: enforce without losing mail."""


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
):
    _module.register(app)
