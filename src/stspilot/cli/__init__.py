"""The ``stspilot`` command: option parsing and presentation only; the work is in the library.

Exit codes (fixed, documented in README and ``docs/cli.md``):

    0  clean: no finding above info (or the command succeeded)
    1  warnings
    2  errors (for ``rollout``: the enforce gate does not pass)
    3  usage error (bad options or arguments, a name that is no domain)
    4  operational error (configuration, database, input that cannot be read)
    5  internal error (a bug: please report it)

The commands are assembled in ``stspilot.cli.app`` (one module per command, or group of
commands). This module stays free of Typer and rich so that ``main`` can start fast; heavy
libraries (SQLAlchemy, Starlette, ...) are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys

from stspilot.errors import ConfigError, InvalidName, StspilotError

EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS, EXIT_USAGE, EXIT_OPERATIONAL, EXIT_INTERNAL = range(6)


LOG_LEVEL_ENV = "STSPILOT_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class UsageError(ConfigError):
    """A command line that cannot be run as given (exit 3, one line)."""


def configure_logging(level: str | None = None, *, quiet: bool = False, verbose: int = 0) -> None:
    """Log to stderr at ``--log-level`` (else ``-q``: errors, ``-v``: info, ``-vv``: debug,
    else $STSPILOT_LOG_LEVEL, else warnings)."""
    import logging

    if level is None:
        if quiet:
            level = "error"
        elif verbose:
            level = "info" if verbose == 1 else "debug"
        else:
            level = os.environ.get(LOG_LEVEL_ENV, "warning")
    if level.lower() not in LOG_LEVELS:
        raise UsageError(f"log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="stspilot: %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the one place (with the web app's handler) where errors meet people."""
    args = list(sys.argv[1:] if argv is None else argv)
    code = _run(args)
    if argv is None and args[:1] in (["check"], ["ingest"]):  # the command line's own process
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End ``stspilot check``'s and ``stspilot ingest``'s process without the interpreter's
    teardown, which only frees memory the process is about to give back: module dicts, the
    objects of the check and the loaded libraries (40-60 ms of CPU a one-domain check,
    `bench/peers.py --only single`; 20-40 ms after ingesting 10,000 files, whose store is
    closed, committed and checkpointed, before this).
    Its output is flushed first; anything unusual (a stream that will not flush, a thread
    still running) falls back to the ordinary exit."""
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    if threading.active_count() > 1:
        return
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    os._exit(code)


def _run(args: list[str]) -> int:
    try:
        return _dispatch(args)
    except (UsageError, InvalidName) as exc:
        print(f"stspilot: {exc}", file=sys.stderr)
        return EXIT_USAGE
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


def _dispatch(args: list[str]) -> int:
    if args[:1] == ["check"]:
        # The fast path: a check sends its first packet before Typer and rich are loaded.
        from stspilot.cli.check_run import fast_check

        configure_logging()
        code = fast_check(args[1:])
        if code is not None:
            return code
    if args[:1] == ["ingest"]:
        # The same for bulk ingest: no Typer nor pydantic (cli/ingest_run.py).
        from stspilot.cli.ingest_run import fast_ingest

        configure_logging()
        code = fast_ingest(args[1:])
        if code is not None:
            return code
    import typer

    from stspilot.cli.app import app

    try:
        result = app(args=args, prog_name="stspilot", standalone_mode=False)
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
    return int(result) if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":  # python -m stspilot.cli
    sys.exit(main())
