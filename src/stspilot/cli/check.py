"""``stspilot check``: probe domains as a sending MTA would and print what is wrong, and the fix.

Presentation only: options are parsed here, ``stspilot.check.run.check_domains_iter`` does the
work and hands results over in input order as they complete, ``stspilot.check.render`` draws each
one as it comes (an ``Output``), and only a tally is kept for the exit code and the summary.
Exit code from the worst finding: 0 clean or info, 1 warnings, 2 errors (3 usage,
4 operational, as everywhere in the CLI).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stspilot.cli import EXIT_ERRORS, EXIT_OK, EXIT_OPERATIONAL, EXIT_WARNINGS
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from stspilot.check.evaluate import CheckResult
    from stspilot.check.render import CheckTally
    from stspilot.check.run import CheckOptions

PROGRESS_FROM = 5  # domains; fewer finish before a bar would be worth drawing
MAX_FILE_DOMAINS = 1_000_000

HELP = """Check the MTA-STS and TLS-RPT setup of DOMAIN(s) the way a sending MTA sees it.

For each domain: the _mta-sts and _smtp._tls TXT records, the policy fetched from
https://mta-sts.DOMAIN/.well-known/mta-sts.txt (no redirects, 200 only, text/plain, 64 KiB,
WebPKI), the live MX set against the policy, and a STARTTLS probe of every MX (certificate,
name, expiry). Many domains: -f FILE (one per line, # comments; - for stdin) with
--concurrency N (in flight in all) and --workers N (processes).

Output: up to 20 domains, a report at the end; more, a line per domain and a closing tally.
--json prints one stspilot.check/1 document, --jsonl one JSON object per domain per line.
Every mode writes results as they complete, in input order: a slow domain holds back at
most 4 x --concurrency finished ones behind it, and memory does not grow with the number of
domains. A progress bar is drawn on stderr when it is a terminal and the output is not
already scrolling there.

Exit code: 0 clean (or only information), 1 warnings, 2 errors.
"""


def parse_nameserver(text: str | None) -> tuple[str | None, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` → (address, port)."""
    import ipaddress

    if not text:
        return None, 53
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise typer.BadParameter(f"--nameserver wants IP[:PORT], not {text!r}") from exc
    if not 0 < number < 65536:
        raise typer.BadParameter(f"--nameserver port out of range: {text!r}")
    return host, number


def parse_port_map(text: str | None) -> dict[int, int]:
    """``443=8443,25=2525`` → {443: 8443, 25: 2525}."""
    mapping: dict[int, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        left, sep, right = item.partition("=")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise typer.BadParameter(f"--port-map wants PORT=PORT[,PORT=PORT], not {item!r}")
        src, dst = int(left), int(right)
        if not (0 < src < 65536 and 0 < dst < 65536):
            raise typer.BadParameter(f"--port-map port out of range in {item!r}")
        mapping[src] = dst
    return mapping


def read_domains(args: list[str], file: Path | None) -> list[str]:
    """Arguments first, then the file's lines; normalized, without repeats, order kept."""
    from stspilot.check.run import normalize_domain

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
        raise typer.BadParameter("give at least one DOMAIN or -f FILE")
    try:
        return list(dict.fromkeys(normalize_domain(d) for d in raw))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


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
) -> CheckOptions:
    from stspilot.check.run import CheckOptions

    host, port = parse_nameserver(nameserver)
    if ca_file is not None and not ca_file.is_file():
        raise typer.BadParameter(f"--ca-file {ca_file} is not a file")
    if ca_file is not None:  # not PEM: ConfigError (exit 4) now, before any output
        from stspilot.probes.tls import TlsContexts

        TlsContexts.create(ca_file)
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
    )


def check_command(
    domains: Annotated[list[str] | None, typer.Argument(help="domains to check")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="file of domains, one a line (- = stdin)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one stspilot.check/1 JSON document")
    ] = False,
    as_jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help="print one JSON object per domain per line, in input order"),
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="domains in flight")
    ] = 50,
    no_mx_probe: Annotated[
        bool, typer.Option("--no-mx-probe", help="skip the STARTTLS probes of the MX hosts")
    ] = False,
    nameserver: Annotated[
        str | None, typer.Option("--nameserver", help="DNS server IP[:PORT] (default: system)")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="extra CA certificate (PEM) to trust")
    ] = None,
    port_map: Annotated[
        str | None, typer.Option("--port-map", help="e.g. 443=8443,25=2525 (the lab)")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds per network step")
    ] = 10.0,
    deadline: Annotated[
        float, typer.Option("--deadline", min=0.5, help="seconds for one whole domain")
    ] = 45.0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="processes to shard the domains over (default: one per CPU from 200 domains)",
        ),
    ] = None,
    expiry_days: Annotated[
        int,
        typer.Option(
            "--expiry-days", min=0, help="warn of certificates expiring within this many days"
        ),
    ] = 14,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="explain everything")] = False,
) -> None:
    import asyncio

    if as_json and as_jsonl:
        raise typer.BadParameter("--json and --jsonl are two output formats: give one of them")
    names = read_domains(domains or [], file)
    options = build_options(
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        concurrency=concurrency,
        probe_mx=not no_mx_probe,
        expiry_days=expiry_days,
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
        raise typer.Exit(EXIT_OPERATIONAL) from None
    raise typer.Exit(exit_code(tally))


class Output:
    """What ``stspilot check`` prints: text pieces made per result, in input order.

    Only the tally is kept (and, for a small run's report, its few results), so memory does
    not grow with the number of domains. ``streams``: text appears as results come.
    """

    streams = True

    def __init__(self) -> None:
        from stspilot.check.render import CheckTally

        self.tally = CheckTally()

    def start(self) -> str:
        return ""

    def entry(self, result: CheckResult) -> str:
        self.tally.add(result)
        return ""

    def finish(self) -> str:
        return ""


class JsonLinesOutput(Output):
    def entry(self, result: CheckResult) -> str:
        from stspilot.check.render import format_result_jsonl

        super().entry(result)
        return format_result_jsonl(result)


class JsonOutput(Output):
    def __init__(self) -> None:
        from stspilot.check.render import CheckJsonDocument

        self.document = CheckJsonDocument()
        self.tally = self.document.tally

    def start(self) -> str:
        return self.document.start()

    def entry(self, result: CheckResult) -> str:
        return self.document.entry(result)

    def finish(self) -> str:
        return self.document.finish()


class TextOutput(Output):
    """Few domains: the full report at the end. Many: a line each (or, verbose, a full
    report each) as they come, then the tally."""

    def __init__(self, count: int, *, verbose: bool) -> None:
        from rich.console import Console

        from stspilot.check.render import LINES_FROM

        super().__init__()
        self.console = Console()  # stdout's terminal, width and colours; written via capture
        self.verbose = verbose
        self.streams = count >= LINES_FROM
        self.results: list[CheckResult] = []  # a small run only

    def _capture(self, draw: Callable[[Console], None]) -> str:
        with self.console.capture() as captured:
            draw(self.console)
        return captured.get()

    def entry(self, result: CheckResult) -> str:
        from stspilot.check.render import render_result, render_result_line

        super().entry(result)
        if not self.streams:
            self.results.append(result)
            return ""
        if self.verbose:
            return self._capture(lambda c: render_result(result, c, verbose=True))
        return self._capture(lambda c: render_result_line(result, c))

    def finish(self) -> str:
        from stspilot.check.render import render_check_text, render_tally

        if self.streams:
            return self._capture(lambda c: render_tally(self.tally, c))
        return self._capture(lambda c: render_check_text(self.results, c, verbose=self.verbose))


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

    with contextlib.ExitStack() as stack:
        on_result = None
        if bar:
            # rich is imported when there is something to draw: start-up is before the first
            # packet.
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

        await write(output.start())
        stream = check_domains_iter(names, options=options, on_result=on_result, workers=workers)
        async with contextlib.aclosing(stream):
            async for _, result in stream:
                await write(output.entry(result))
    await write(output.finish())
    return output.tally


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _silence_stdout() -> None:
    import os

    # Python flushes stdout at exit; pointing it at /dev/null keeps that from failing again.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def register(app: typer.Typer) -> None:
    app.command("check", help=HELP)(check_command)
