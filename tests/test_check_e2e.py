"""End to end: every lab scenario through ``check_domain`` and a few through the real CLI.

The lab runs real DNS, HTTPS and SMTP servers on 127.B.x.y; nothing is mocked. Each scenario
states the exact set of finding codes and the stage ``stspilot check`` must report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from stspilot.check.pool import default_workers
from stspilot.check.run import CheckOptions, Probes, check_domain, check_domains, check_domains_iter
from stspilot.cli import main
from stspilot.lab.scenarios import BY_DOMAIN, SCENARIOS, Scenario
from stspilot.lab.world import Lab, LabInfo, start_lab

pytestmark = [pytest.mark.slow]


def _options(info: LabInfo, **kw: object) -> CheckOptions:
    base: dict[str, object] = {
        "nameserver": info.nameserver,
        "dns_port": info.dns_port,
        "ca_file": info.ca_file,
        "port_map": info.port_map,
        "trust_anchor": info.trust_anchor,  # the DANE scenarios' signed zones
        "dns_timeout": 2.0,
        "connect_timeout": 2.0,
        "read_timeout": 0.6,
        "fetch_timeout": 2.0,
        "smtp_timeout": 3.0,
        "deadline": 6.0,
    }
    base.update(kw)
    return CheckOptions(**base)  # type: ignore[arg-type]


# The short timeouts above make the scenarios whose point is a timeout (tagged "slow") end
# quickly. For every other scenario a timeout can only be the machine's doing: the lab's servers
# share the CPU (in-process, even the event loop) with the checker, and under load (8-14 on two
# cores) a 1 MiB body or a STARTTLS handshake can take longer than 0.6 s or 3 s. Those scenarios
# get patient timeouts; what they are checked for (their exact findings) is unchanged.
PATIENT: dict[str, object] = {
    "dns_timeout": 10.0,
    "connect_timeout": 10.0,
    "read_timeout": 10.0,
    "fetch_timeout": 15.0,
    "smtp_timeout": 15.0,
    "deadline": 60.0,
}


def _timed(scenario: Scenario) -> bool:
    return "slow" in scenario.tags


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(SCENARIOS) as world:
        yield world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def probes(lab: Lab) -> AsyncIterator[Probes]:
    async with Probes(_options(lab.info)) as shared:
        yield shared


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def patient_probes(lab: Lab) -> AsyncIterator[Probes]:
    async with Probes(_options(lab.info, **PATIENT)) as shared:
        yield shared


def _params() -> list[object]:
    return [pytest.param(sc, id=sc.domain) for sc in SCENARIOS]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("scenario", _params())
async def test_scenario(
    lab: Lab, probes: Probes, patient_probes: Probes, scenario: Scenario
) -> None:
    if _timed(scenario):
        options, shared = _options(lab.info), probes
    else:
        options, shared = _options(lab.info, **PATIENT), patient_probes
    result = await check_domain(scenario.domain, probes=shared, options=options)
    assert set(result.codes()) == scenario.expected
    assert result.stage == scenario.stage
    assert not result.deadline_hit


@pytest.mark.asyncio(loop_scope="module")
async def test_bulk_keeps_order_and_reports_each(lab: Lab) -> None:
    domains = [sc.domain for sc in SCENARIOS if not _timed(sc)]
    seen: list[str] = []
    results = await check_domains(
        domains,
        options=_options(lab.info, concurrency=8, **PATIENT),
        on_result=lambda r: seen.append(r.domain),
    )
    assert [r.domain for r in results] == domains
    assert sorted(seen) == sorted(domains)
    for result in results:
        assert set(result.codes()) == BY_DOMAIN[result.domain].expected, result.domain


@pytest.mark.asyncio(loop_scope="module")
async def test_worker_processes_give_the_same_results_in_order(lab: Lab) -> None:
    # Every scenario twice, so both workers get several and batches interleave.
    domains = [sc.domain for sc in SCENARIOS if not _timed(sc)] * 2
    seen: list[str] = []
    results = await check_domains(
        domains,
        options=_options(lab.info, concurrency=8, **PATIENT),
        on_result=lambda r: seen.append(r.domain),
        workers=2,
    )
    assert [r.domain for r in results] == domains
    assert sorted(seen) == sorted(domains)
    for result in results:
        assert set(result.codes()) == BY_DOMAIN[result.domain].expected, result.domain
        assert result.stage == BY_DOMAIN[result.domain].stage


# A policy host that completes TLS and then says nothing: with the lab's 0.6 s read timeout
# this domain finishes well after the others, whatever its place in the input.
SLOW = "fetch-hang.test"
FAST = [sc.domain for sc in SCENARIOS if not {"slow", "hostile"} & set(sc.tags)]


async def _stream(
    domains: list[str], options: CheckOptions, **kw: object
) -> tuple[list[tuple[int, str]], list[str], int]:
    """Run ``check_domains_iter``: what it yielded, the completion order, and the most
    finished results it ever held back at once."""
    finished: list[str] = []
    yielded: list[tuple[int, str]] = []
    held = 0
    stream = check_domains_iter(
        domains,
        options=options,
        on_result=lambda r: finished.append(r.domain),
        **kw,  # type: ignore[arg-type]
    )
    async with contextlib.aclosing(stream):
        async for index, result in stream:
            held = max(held, len(finished) - len(yielded))
            yielded.append((index, result.domain))
    return yielded, finished, held


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("workers", [1, 2])
async def test_stream_keeps_input_order_behind_a_slow_domain(lab: Lab, workers: int) -> None:
    domains = [SLOW, *FAST]
    # The hang lasts 2 s (not 0.6 s): on a loaded machine more than 4 others still finish in it.
    options = _options(lab.info, concurrency=4, read_timeout=2.0)
    yielded, finished, held = await _stream(domains, options, workers=workers, window=12)
    assert yielded == list(enumerate(domains))
    # The slow one finished late, yet came out first; the others waited for it in a window
    # of at most 12 finished results, and the run went on after it.
    assert finished.index(SLOW) > 0
    assert 4 < held <= 12  # more than the 4 in flight were held, never more than the window
    assert sorted(finished) == sorted(domains)


@pytest.mark.asyncio(loop_scope="module")
async def test_stream_results_match_the_list(lab: Lab) -> None:
    domains = [*FAST[:6], SLOW, *FAST[6:12]]
    options = _options(lab.info, concurrency=8)
    listed = await check_domains(domains, options=options)
    streamed = []
    async with contextlib.aclosing(check_domains_iter(iter(domains), options=options)) as it:
        async for _, result in it:  # a plain iterator (no len) is read lazily, in-process
            streamed.append(result)
    assert [r.domain for r in streamed] == domains
    for a, b in zip(listed, streamed, strict=True):
        assert a.codes() == b.codes() and a.stage == b.stage


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("workers", [1, 2])
async def test_stream_closed_early_stops_at_once(lab: Lab, workers: int) -> None:
    # Long per-step timeouts: only closing the iterator can end the hanging checks quickly.
    options = _options(lab.info, read_timeout=30.0, fetch_timeout=30.0, deadline=30.0)
    domains = [FAST[0], SLOW, "fetch-slow.test", *FAST[1:]]
    started = time.perf_counter()
    got = []
    async with contextlib.aclosing(
        check_domains_iter(domains, options=options, workers=workers)
    ) as stream:
        async for index, result in stream:
            got.append((index, result.domain))
            break
    assert got == [(0, FAST[0])]
    assert time.perf_counter() - started < 15.0  # not the 30 s deadline: nothing left behind


@pytest.mark.parametrize(("count", "expected"), [(1, 1), (199, 1), (200, None), (10_000, None)])
def test_default_workers(count: int, expected: int | None) -> None:
    cpus = os.cpu_count() or 1
    want = expected if expected is not None else max(1, min(cpus, count // 100))
    assert default_workers(count) == want


@pytest.mark.asyncio(loop_scope="module")
async def test_deadline_cuts_a_hanging_domain_short(lab: Lab) -> None:
    # Generous per-step timeouts; only the per-domain deadline can end this in time.
    options = _options(lab.info, read_timeout=30.0, fetch_timeout=60.0, deadline=1.0)
    started = time.perf_counter()
    async with Probes(options) as probes:
        result = await check_domain("fetch-hang.test", probes=probes, options=options)
    assert time.perf_counter() - started < 2.5  # the deadline, plus slack for a busy machine
    assert result.deadline_hit
    assert "check.deadline" in result.codes() and "sts.policy.timeout" in result.codes()


@pytest.mark.asyncio(loop_scope="module")
async def test_hostile_servers_stay_within_deadline_and_memory(lab: Lab) -> None:
    hostile = [sc.domain for sc in SCENARIOS if "hostile" in sc.tags or "slow" in sc.tags]
    options = _options(lab.info, read_timeout=5.0, fetch_timeout=10.0, deadline=2.0)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        results = await check_domains(hostile, options=options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5.0  # 2 s deadline; fetch limits alone are 10 s
    assert len(results) == len(hostile)
    assert peak < 32 * 1024 * 1024  # the 16 MiB gzip bomb and endless bodies are never held
    for result in results:
        assert result.policy_source is None or len(result.policy_source) <= 64 * 1024


# --- the CLI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def threaded_lab() -> Iterator[LabInfo]:
    """The lab on its own loop in a thread: the CLI runs ``asyncio.run`` itself."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="lab", daemon=True)
    thread.start()
    chosen = ["enforce-ok.test", "mx-expired.test", "tlsrpt-absent.test", "testing-ok.test", SLOW]
    world = asyncio.run_coroutine_threadsafe(
        start_lab([BY_DOMAIN[d] for d in chosen]), loop
    ).result(60)
    try:
        yield world.info
    finally:
        asyncio.run_coroutine_threadsafe(world.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize(
    ("domains", "code"),
    [
        (["enforce-ok.test"], 0),
        (["testing-ok.test"], 0),  # information only
        (["tlsrpt-absent.test"], 1),
        (["enforce-ok.test", "mx-expired.test"], 2),
    ],
)
def test_cli_exit_codes(
    threaded_lab: LabInfo, domains: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *threaded_lab.check_args(), *domains]) == code
    out = capsys.readouterr().out
    assert all(d in out for d in domains)


def test_cli_json_and_file(
    threaded_lab: LabInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text("# customers\nMX-Expired.test.\n\nenforce-ok.test  # the good one\n")
    assert main(["check", *threaded_lab.check_args(), "--json", "-f", str(listing)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "stspilot.check/2"
    assert [d["domain"] for d in doc["domains"]] == ["mx-expired.test", "enforce-ok.test"]
    codes = {f["code"] for f in doc["domains"][0]["findings"]}
    assert codes == {"mx.cert.expired"}


def test_cli_no_mx_probe(threaded_lab: LabInfo, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["check", *threaded_lab.check_args(), "--json", "--no-mx-probe", "mx-expired.test"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["domains"][0]["findings"] == []


def test_cli_expiry_days(threaded_lab: LabInfo, capsys: pytest.CaptureFixture[str]) -> None:
    """The lab's good certificates have 90 days left: quiet at the default 14, "expiring"
    (a warning, exit 1) for the MX and the policy host at --expiry-days 120."""
    assert main(["check", *threaded_lab.check_args(), "--json", "enforce-ok.test"]) == 0
    assert json.loads(capsys.readouterr().out)["domains"][0]["findings"] == []
    argv = ["check", *threaded_lab.check_args(), "--json", "--expiry-days", "120"]
    assert main([*argv, "enforce-ok.test"]) == 1
    doc = json.loads(capsys.readouterr().out)
    codes = {f["code"] for f in doc["domains"][0]["findings"]}
    assert codes == {"mx.cert.expiring", "sts.policy.tls.expiring"}


CLI_DOMAINS = ["mx-expired.test", "enforce-ok.test", "tlsrpt-absent.test", "testing-ok.test"]
# The lab's slow domain ends in about half a second with these; the others in milliseconds.
QUICK = ["--timeout", "0.5", "--deadline", "5"]


def _without_times(entry: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in entry.items() if k != "observed_at"}


def test_cli_jsonl_is_the_json_documents_domains(
    threaded_lab: LabInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", *threaded_lab.check_args(), *QUICK]
    assert main([*argv, "--json", *CLI_DOMAINS]) == 2
    document = json.loads(capsys.readouterr().out)
    assert main([*argv, "--jsonl", *CLI_DOMAINS]) == 2
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert out.endswith("\n") and len(lines) == len(CLI_DOMAINS)  # nothing else: no summary
    entries = [json.loads(line) for line in lines]
    assert [e["domain"] for e in entries] == CLI_DOMAINS
    assert [_without_times(e) for e in entries] == [_without_times(e) for e in document["domains"]]
    assert document["summary"] == {"domains": 4, "errors": 1, "warnings": 1, "clean": 2}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_jsonl_order_holds_behind_a_slow_domain(
    threaded_lab: LabInfo, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    domains = [SLOW, *CLI_DOMAINS, "n1.nowhere.test"]
    argv = ["check", *threaded_lab.check_args(), *QUICK, "--workers", workers, "--jsonl"]
    assert main([*argv, *domains]) == 2
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["domain"] for e in entries] == domains
    assert "sts.policy.timeout" in {f["code"] for f in entries[0]["findings"]}


@pytest.mark.parametrize(
    ("domains", "code"),
    [(["enforce-ok.test", "testing-ok.test"], 0), (["tlsrpt-absent.test"], 1), (CLI_DOMAINS, 2)],
)
def test_cli_jsonl_exit_codes(
    threaded_lab: LabInfo, domains: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *threaded_lab.check_args(), "--jsonl", *domains]) == code
    assert len(capsys.readouterr().out.splitlines()) == len(domains)


def test_cli_many_domains_a_line_each_then_the_tally(
    threaded_lab: LabInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 25 domains: past the full report's 20. Names the lab does not know are NXDOMAIN errors.
    unknown = [f"n{i}.nowhere.test" for i in range(20)]
    domains = [SLOW, *CLI_DOMAINS, *unknown]
    listing = tmp_path / "many.txt"
    listing.write_text("\n".join(domains) + "\n")
    assert main(["check", *threaded_lab.check_args(), *QUICK, "-f", str(listing)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(domains) + 1
    assert [line.split()[2] for line in lines[:-1]] == domains  # "✗ error DOMAIN ..."
    by_domain = dict(zip(domains, lines, strict=False))
    assert by_domain["enforce-ok.test"].split() == [
        "✓",
        "ok",
        "enforce-ok.test",
        "enforce",
        "mode",
        "enforce",
    ]
    assert (
        "1 error, 0 warnings  mx.cert.expired mx1.mx-expired.test" in by_domain["mx-expired.test"]
    )
    assert by_domain["tlsrpt-absent.test"].startswith("! warning")
    assert lines[-1] == "Checked 25 domains: 2 clean, 1 with warnings, 22 with errors."
    # A few domains keep the full report.
    assert main(["check", *threaded_lab.check_args(), *CLI_DOMAINS]) == 2
    out = capsys.readouterr().out
    assert "Stage:" not in out and "4 domains" in out  # the summary table, as before


def test_cli_json_and_jsonl_together_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--json", "--jsonl", "a.test"]) == 3
    captured = capsys.readouterr()
    assert "--json and --jsonl" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["check", "--port-map", "443:8443", "a.test"],
        ["check", "--nameserver", "not-an-ip", "a.test"],
        ["check", "not a domain"],
        ["check", "--concurrency", "0", "a.test"],
    ],
)
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, (None, 53)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_parse_nameserver(text: str | None, expected: tuple[str | None, int]) -> None:
    from stspilot.cli.values import parse_nameserver

    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("443=8443", {443: 8443}),
        ("443=8443, 25=2525,", {443: 8443, 25: 2525}),
    ],
)
def test_parse_port_map(text: str | None, expected: dict[int, int]) -> None:
    from stspilot.cli.values import parse_port_map

    assert parse_port_map(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        (" mail.example.org ", "mail.example.org"),
    ],
)
def test_check_door_names(text: str, expected: str) -> None:
    from stspilot.sts.names import domain_name

    assert domain_name(text) == expected


# An IP literal was taken for a name before sts.names became the one door (issue 10).
@pytest.mark.parametrize(
    "text", ["", "localhost", "a b.example", "user@example.com", "a..b", "192.0.2.1", "[::1]"]
)
def test_check_door_refuses(text: str) -> None:
    from stspilot.errors import ConfigError
    from stspilot.sts.names import domain_name

    with pytest.raises(ConfigError):
        domain_name(text)


@pytest.mark.asyncio(loop_scope="module")
async def test_library_defaults_and_bad_input(lab: Lab) -> None:
    options = _options(lab.info)
    # check_domain without shared probes makes and closes its own; the name is normalized.
    result = await check_domain("Enforce-OK.test.", options=options)
    assert result.domain == "enforce-ok.test" and set(result.codes()) == set()
    # An IP literal is no policy domain (sts.names): refused before any probe.
    from stspilot.errors import InvalidName

    with pytest.raises(InvalidName):
        await check_domain("192.0.2.1", options=options)
    # In bulk, a name that is not a domain is a result, and the others still run.
    results = await check_domains(["not a domain", "enforce-ok.test"], options=options)
    assert [r.domain for r in results] == ["not a domain", "enforce-ok.test"]
    assert results[0].worst is not None and set(results[1].codes()) == set()
