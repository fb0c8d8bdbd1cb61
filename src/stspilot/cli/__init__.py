"""The ``stspilot`` command: option parsing and presentation only; the work is in the library.

Exit codes (fixed, documented in README and ``docs/cli.md``):

    0  clean: no finding above info (or the command succeeded)
    1  warnings
    2  errors (for ``rollout``: the enforce gate does not pass)
    3  usage error (bad options or arguments)
    4  operational error (configuration, database, input that cannot be read)
    5  internal error (a bug: please report it)

Each sub-command lives in its own module here and registers itself on the root ``app``.
Heavy libraries (SQLAlchemy, Starlette, ...) are imported inside the commands that need them,
so ``stspilot check`` starts fast.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

import typer

from stspilot.errors import StspilotError

EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS, EXIT_USAGE, EXIT_OPERATIONAL, EXIT_INTERNAL = range(6)

app = typer.Typer(
    name="stspilot",
    help="Take a mail domain from no MTA-STS to mode: enforce without losing mail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-command modules, each with ``register(app)``; listed here so the CLI's shape is in one place.
_COMMAND_MODULES = (
    "check",
    "generate",
    "rollout",
    "ingest",
    "reports",
    "receive",
    "serve",
    "users",
    "monitor",
    "lab",
    "publish",
)


@app.callback()
def _root() -> None:
    """Take a mail domain from no MTA-STS to mode: enforce without losing mail."""


@app.command()
def version() -> None:
    """Print the stspilot version."""
    from stspilot import __version__

    typer.echo(__version__)


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = import_module(f"stspilot.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet in this checkout
            if exc.name != f"stspilot.cli.{name}":
                raise
            continue
        module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the one place (with the web app's handler) where errors meet people."""
    _register_all()
    try:
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return EXIT_OPERATIONAL
    except typer.TyperException as exc:  # click's errors, vendored by typer
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"stspilot: {exc}", file=sys.stderr)
        # click marks usage errors with exit code 2; ours is 3 (2 means "errors found").
        return EXIT_USAGE if getattr(exc, "exit_code", 1) == 2 else EXIT_OPERATIONAL
    except StspilotError as exc:
        print(f"stspilot: {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line for people, the traceback on request
        if os.environ.get("STSPILOT_DEBUG"):
            raise
        print(
            f"stspilot: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug; please report it (STSPILOT_DEBUG=1 shows the traceback).",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return int(result) if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":  # python -m stspilot.cli
    sys.exit(main())
