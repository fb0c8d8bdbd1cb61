"""What ``stspilot check`` does once its options are parsed, and a fast path that parses them.

Presentation only: ``stspilot.check.run.check_domains_iter`` does the work and hands results
over in input order as they complete, ``stspilot.check.render`` draws each one as it comes (an
``Output``), and only a tally is kept for the exit code and the summary.

No Typer or rich here before the first packet: ``main`` sends ``stspilot check ...`` to
``fast_check``, which parses the common command lines with argparse (a few milliseconds) and
hands anything else (``--help``, a mistake, an out-of-range value) back to the Typer command
in ``cli/check.py``, the one definition of the command's help and errors. A test keeps the two
parsers' options the same. rich and the renderers are imported when the first result arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stspilot.cli import EXIT_ERRORS, EXIT_OK, EXIT_OPERATIONAL, EXIT_WARNINGS, UsageError
from stspilot.cli.values import parse_nameserver, parse_port_map
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from stspilot.check.evaluate import CheckResult
    from stspilot.check.json_doc import CheckJsonDocument, CheckTally
    from stspilot.check.run import CheckOptions

PROGRESS_FROM = 5  # domains; fewer finish before a bar would be worth drawing
MAX_FILE_DOMAINS = 1_000_000


def read_domains(args: list[str], file: Path | None) -> list[str]:
    """Arguments first, then the file's lines; canonical names, without repeats, order kept.

    A name that is no domain (an IP address, a URL, an empty label) is ``InvalidName``: exit 3
    with one line, as at every door that takes a domain.
    """
    from stspilot.sts.names import domain_name

    raw = list(args)
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from exc
        for line in text.splitlines()[:MAX_FILE_DOMAINS]:
            line = line.split("#", 1)[0].strip()
            if line:
                raw.append(line)
    if not raw:
        raise UsageError("give at least one DOMAIN or -f FILE")
    return list(dict.fromkeys(domain_name(d) for d in raw))


def exit_code(tally: CheckTally) -> int:
    from stspilot.findings import Severity

    worst = tally.worst
    if worst is None or worst < Severity.WARNING:
        return EXIT_OK
    return EXIT_WARNINGS if worst == Severity.WARNING else EXIT_ERRORS


def build_options(
    *,
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float,
    deadline: float,
    concurrency: int,
    probe_mx: bool,
    expiry_days: int = 14,
    dane: bool = True,
    trust_anchor: Path | None = None,
) -> CheckOptions:
    from stspilot.check.run import CheckOptions

    host, port = parse_nameserver(nameserver)
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"--ca-file {ca_file} is not a file")
    if ca_file is not None:  # not PEM: ConfigError (exit 4) now, before any output
        from stspilot.probes.tls import TlsContexts

        TlsContexts.create(ca_file)
    if trust_anchor is not None and not trust_anchor.is_file():
        raise UsageError(f"--trust-anchor {trust_anchor} is not a file")
    return CheckOptions(
        nameserver=host,
        dns_port=port,
        ca_file=ca_file,
        port_map=parse_port_map(port_map),
        dns_timeout=min(timeout, 5.0),
        connect_timeout=timeout,
        read_timeout=timeout,
        fetch_timeout=2 * timeout,
        smtp_timeout=3 * timeout,
        deadline=deadline,
        probe_mx=probe_mx,
        concurrency=concurrency,
        expiry_warning_days=expiry_days,
        dane=dane,
        trust_anchor=trust_anchor,
    )


def run_check_command(
    domains: list[str],
    *,
    file: Path | None = None,
    as_json: bool = False,
    as_jsonl: bool = False,
    concurrency: int = 50,
    no_mx_probe: bool = False,
    nameserver: str | None = None,
    ca_file: Path | None = None,
    port_map: str | None = None,
    timeout: float = 10.0,
    deadline: float = 45.0,
    workers: int | None = None,
    expiry_days: int = 14,
    no_dane: bool = False,
    trust_anchor: Path | None = None,
    verbose: bool = False,
) -> int:
    """``stspilot check`` with its options parsed; the exit code."""
    import asyncio

    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl are two output formats: give one of them")
    names = read_domains(domains, file)
    options = build_options(
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        concurrency=concurrency,
        probe_mx=not no_mx_probe,
        expiry_days=expiry_days,
        dane=not no_dane,
        trust_anchor=trust_anchor,
    )
    output = make_output(len(names), as_json=as_json, as_jsonl=as_jsonl, verbose=verbose)
    # The bar goes to stderr, and only where no output scrolls past it on the same screen.
    bar = sys.stderr.isatty() and len(names) >= PROGRESS_FROM
    bar = bar and not (output.streams and sys.stdout.isatty())
    try:
        tally = asyncio.run(run_checks(names, options, workers=workers, output=output, bar=bar))
    except BrokenPipeError:  # the reader went away (| head): stop, without a traceback
        _silence_stdout()
        done = output.tally.domains
        print(f"stspilot: output closed; stopped after {done} of {len(names)}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except _OutputFailed as exc:  # a full disk, a file system gone: one line, exit 4
        _silence_stdout()
        done = output.tally.domains
        print(
            f"stspilot: cannot write the output ({exc.__cause__}); stopped after {done} of"
            f" {len(names)}",
            file=sys.stderr,
        )
        return EXIT_OPERATIONAL
    return exit_code(tally)


# --- the fast path ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FastOption:
    """One option of ``stspilot check`` as the fast path parses it (see ``cli/check.py``)."""

    dest: str
    flags: tuple[str, ...]
    kind: type | None  # None: a flag
    default: Any = None
    min: float | None = None
    max: float | None = None


FAST_OPTIONS = (
    FastOption("file", ("-f", "--file"), Path),
    FastOption("as_json", ("--json",), None, False),
    FastOption("as_jsonl", ("--jsonl",), None, False),
    FastOption("concurrency", ("--concurrency",), int, 50, 1, 10_000),
    FastOption("no_mx_probe", ("--no-mx-probe",), None, False),
    FastOption("nameserver", ("--nameserver",), str),
    FastOption("ca_file", ("--ca-file",), Path),
    FastOption("port_map", ("--port-map",), str),
    FastOption("timeout", ("--timeout",), float, 10.0, 0.1),
    FastOption("deadline", ("--deadline",), float, 45.0, 0.5),
    FastOption("workers", ("--workers",), int, None, 1, 64),
    FastOption("expiry_days", ("--expiry-days",), int, 14, 0),
    FastOption("no_dane", ("--no-dane",), None, False),
    FastOption("trust_anchor", ("--trust-anchor",), Path),
    FastOption("verbose", ("--verbose", "-v"), None, False),
)


class _NotFast(Exception):
    """The command line is not one the fast path takes; Typer parses it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never print or exit: Typer will say it better
        raise _NotFast(message)


class _Formatter(argparse.HelpFormatter):
    """Never prints (the fast path has no help); a fixed width spares argparse importing
    shutil (and with it bz2 and lzma) to ask the terminal's, before the first packet."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=80)


def _fast_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stspilot check", add_help=False, allow_abbrev=False, formatter_class=_Formatter
    )
    parser.add_argument("domains", nargs="*")
    for o in FAST_OPTIONS:
        if o.kind is None:
            parser.add_argument(*o.flags, dest=o.dest, action="store_true")
        else:
            parser.add_argument(*o.flags, dest=o.dest, type=o.kind, default=o.default)
    return parser


def fast_check(args: list[str]) -> int | None:
    """Run ``stspilot check ARGS`` without Typer; None when Typer should parse ARGS."""
    if any(a in ("-h", "--help") or a.startswith("--help=") for a in args):
        return None
    try:
        parsed = vars(_fast_parser().parse_intermixed_args(args))
    except _NotFast:
        return None
    for o in FAST_OPTIONS:
        value = parsed[o.dest]
        if value is None or o.kind is None:
            continue
        if (o.min is not None and value < o.min) or (o.max is not None and value > o.max):
            return None  # out of range: Typer's message names the bounds
    return run_check_command(parsed.pop("domains"), **parsed)


# --- output ----------------------------------------------------------------------------------


class Output:
    """What ``stspilot check`` prints: text pieces made per result, in input order.

    Only the tally is kept (and, for a small run's report, its few results), so memory does
    not grow with the number of domains. ``streams``: text appears as results come. Nothing
    here imports the renderers (and rich) before it has something to render.
    """

    def __init__(self) -> None:
        self._tally: CheckTally | None = None

    @property
    def streams(self) -> bool:
        return True

    @property
    def tally(self) -> CheckTally:
        if self._tally is None:
            from stspilot.check.json_doc import CheckTally

            self._tally = CheckTally()
        return self._tally

    def start(self) -> str:
        return ""

    def entry(self, result: CheckResult) -> str:
        self.tally.add(result)
        return ""

    def finish(self) -> str:
        return ""


class JsonLinesOutput(Output):
    def entry(self, result: CheckResult) -> str:
        from stspilot.check.json_doc import format_result_jsonl

        super().entry(result)
        return format_result_jsonl(result)


class JsonOutput(Output):
    def __init__(self) -> None:
        super().__init__()
        self._document: CheckJsonDocument | None = None

    @property
    def document(self) -> CheckJsonDocument:
        if self._document is None:
            from stspilot.check.json_doc import CheckJsonDocument

            self._document = CheckJsonDocument()
            self._tally = self._document.tally
        return self._document

    @property
    def tally(self) -> CheckTally:
        return self.document.tally

    def start(self) -> str:
        return self.document.start()

    def entry(self, result: CheckResult) -> str:
        return self.document.entry(result)

    def finish(self) -> str:
        return self.document.finish()


class TextOutput(Output):
    """Few domains: the full report at the end. Many: a line each (or, verbose, a full
    report each) as they come, then the tally.

    Where rich would write no colour (stdout no terminal: a pipe, a file), the text is laid
    out without importing rich (``check.render.format_result_plain``: the same characters,
    ~30 ms of CPU less a run); rich draws whatever that layout hands back."""

    def __init__(self, count: int, *, verbose: bool) -> None:
        super().__init__()
        self._console: Console | None = None
        self._plain: int | None = None  # the plain layout's width; 0: rich's
        self.verbose = verbose
        self.count = count
        self.results: list[CheckResult] = []  # a small run only

    @property
    def streams(self) -> bool:
        from stspilot.check.render import LINES_FROM

        return self.count >= LINES_FROM

    def _capture(self, draw: Callable[[Console], None]) -> str:
        if self._console is None:
            from rich.console import Console

            self._console = Console()  # stdout's terminal, width and colours; via capture
        with self._console.capture() as captured:
            draw(self._console)
        return captured.get()

    def _draw(self, plain: Callable[[int], str | None], draw: Callable[[Console], None]) -> str:
        if self._plain is None:
            self._plain = plain_width() or 0
        text = plain(self._plain) if self._plain else None
        return self._capture(draw) if text is None else text

    def entry(self, result: CheckResult) -> str:
        from stspilot.check import render

        super().entry(result)
        if not self.streams:
            self.results.append(result)
            return ""
        if self.verbose:
            return self._draw(
                lambda width: render.format_result_plain(result, width, verbose=True),
                lambda c: render.render_result(result, c, verbose=True),
            )
        return self._draw(
            lambda _: render.format_result_line_plain(result),
            lambda c: render.render_result_line(result, c),
        )

    def finish(self) -> str:
        from stspilot.check import render

        if self.streams:
            return self._draw(
                lambda _: render.format_tally_plain(self.tally),
                lambda c: render.render_tally(self.tally, c),
            )
        return self._draw(
            lambda width: render.format_check_plain(self.results, width, verbose=self.verbose),
            lambda c: render.render_check_text(self.results, c, verbose=self.verbose),
        )


def plain_width() -> int | None:
    """The width rich would lay stdout out at, when it would write it without colour or
    control codes (rich's ``Console`` rules: stdout no terminal, no FORCE_COLOR or
    TTY_COMPATIBLE, a UTF-8 encoding, not Windows); None: leave it to rich."""
    import os

    stdout = sys.stdout
    env = os.environ
    if sys.platform == "win32" or "FORCE_COLOR" in env or "TTY_COMPATIBLE" in env:
        return None
    try:
        if stdout.isatty() or not (stdout.encoding or "").lower().startswith("utf"):
            return None
    except (AttributeError, ValueError):
        return None
    columns = env.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else 0
    if columns.isdigit() and not width:  # rich would take it at its word
        return None
    if not width:  # rich asks stdin, stdout, stderr in turn for a terminal's size
        for fd in (0, 1, 2):
            try:
                width = os.get_terminal_size(fd).columns
            except (OSError, ValueError):
                continue
            break
    width = width or 80
    return width if width >= 20 else None


def make_output(count: int, *, as_json: bool, as_jsonl: bool, verbose: bool) -> Output:
    if as_jsonl:
        return JsonLinesOutput()
    if as_json:
        return JsonOutput()
    return TextOutput(count, verbose=verbose)


async def run_checks(
    names: list[str], options: CheckOptions, *, workers: int | None, output: Output, bar: bool
) -> CheckTally:
    """Check ``names``, writing each result as it comes in input order; the tally."""
    import asyncio

    from stspilot.check.run import check_domains_iter

    async def write(text: str) -> None:
        # From a thread: a reader that pauses (| less) holds back new checks through the
        # iterator, but never stalls the event loop, so the deadlines of the checks in flight
        # measure the network, not the reader.
        if text:
            await asyncio.get_running_loop().run_in_executor(None, _write_stdout, text)

    started = False
    with contextlib.ExitStack() as stack:
        on_result = None
        if bar:
            # rich is imported when there is something to draw.
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            progress = Progress(
                *columns,
                console=Console(stderr=True),
                transient=True,
                redirect_stdout=False,  # the results go to stdout itself, not above the bar
                redirect_stderr=False,
            )
            stack.enter_context(progress)
            task = progress.add_task("checking", total=len(names))

            def on_result(_: CheckResult) -> None:
                progress.advance(task)

        stream = check_domains_iter(names, options=options, on_result=on_result, workers=workers)
        async with contextlib.aclosing(stream):
            async for _, result in stream:
                # The document's head is written with the first result: the renderers load
                # after the first packets, not before.
                head = "" if started else output.start()
                started = True
                await write(head + output.entry(result))
    # The checks are over: nothing waits on the loop, so the last piece (a small run's whole
    # report) is written from here, without starting a thread for it.
    _write_stdout(("" if started else output.start()) + output.finish())
    return output.tally


class _OutputFailed(Exception):
    """stdout could not be written for another reason than a reader gone away."""


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _OutputFailed from exc


def _silence_stdout() -> None:
    import os

    # Python flushes stdout at exit; pointing it at /dev/null keeps that from failing again.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
