"""Benchmark of ``stspilot check`` against the lab with simulated network latency; prints figures.

    .venv/bin/python bench/check_bench.py                 # 1,000 and 10,000 healthy domains
    .venv/bin/python bench/check_bench.py --sizes 1000 --concurrency 200 --mx-count 1

The world (DNS, policy hosts, MX hosts) runs in a separate process so the CPU of the checker
and of the servers can be told apart. Latency: 40 ms per TCP exchange, 20 ms per DNS answer.
Figures: domains/s, p50/p95 per-domain wall time, peak RSS, CPU split; one domain's full check
against its critical path; the start-up cost of ``stspilot check`` before the first packet; and
peak RSS of a long run kept as a list (``check_domains``, then the JSON document, as
``stspilot check --json`` did) against streamed (``check_domains_iter``, each domain written as
it comes, as ``stspilot check`` does now):

    .venv/bin/python bench/check_bench.py --skip startup,single,bulk --rss-sizes 2000,10000

DANE on against off: the checker's CPU per domain over DNSSEC-signed domains with TLSA
records (the lab's own trust anchor), each size checked with ``dane=False`` then ``dane=True``
(``--dane-sizes``, in one process, rounds interleaved, the order of off and on alternating
from round to round, after a warm-up round of each that is not counted: ``--dane-warmup``;
per-process memos, such as parsed keys by their DNSKEY octets, are warm in every counted
round of both sides, as they were from the second round before). DANE on: the MX, A and AAAA
questions asked with DO+CD, the TLSA and DNSKEY questions added, four signatures checked
(DNSKEY, MX, TLSA, A), every address's chain matched. Every domain is its own signed zone:
the worst case.
With ``--dane-mx-hosts N`` the domains share N MX hosts of one signed provider zone instead
(real inventories: many domains on one provider), whose TLSA and addresses a run validates once
a host (``probes/dane_share.py``).

    .venv/bin/python bench/check_bench.py --skip startup,single,bulk,rss --dane-sizes 300
    .venv/bin/python bench/check_bench.py --skip startup,single,bulk,rss --dane-sizes 300 \
        --dane-mx-hosts 10

``--dane-validator``: the DANE validator alone over the same kind of zones, no sockets (the
lab's DNS logic answers in-process, as wire read by the resolver's own DO-answer reader):

    .venv/bin/python bench/check_bench.py --skip startup,single,bulk,rss --dane-sizes 300 \
        --dane-validator --dane-repeat 5

The same two in instructions, which the load of a shared machine does not move:
``bench/dane_instructions.py`` (``--checker`` for the checker end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the world process --------------------------------------------------------------------------


PROVIDER = "provider.bench.test"


def _signed(index: int, mx_count: int, hosts: int = 0) -> object:
    """The healthy domain ``index`` with its zone signed and a DANE-EE rollover pair per MX;
    ``hosts`` > 0: its one MX is ``mx<index % hosts>`` of a provider zone (signed once, with
    the first domain) that all domains share, as real inventories do."""
    from dataclasses import replace

    from stspilot.lab.scenarios import Mx, Tlsa, healthy

    sc = healthy(index, mx_count=mx_count)
    if hosts > 0:
        host = f"mx{index % hosts}.{PROVIDER}"
        policy = f"version: STSv1\nmode: enforce\nmx: {host}\nmax_age: 604800\n"
        first = index < hosts  # the first domain naming the host publishes its TLSA
        sc = replace(
            sc, mx=(Mx(host, 10),), policy=policy,
            signed=(sc.domain, PROVIDER) if index == 0 else (sc.domain,),
            tlsa=(Tlsa(host), Tlsa(host, target="other")) if first else (),
        )  # fmt: skip
        return sc
    pairs = tuple(t for mx in sc.mx for t in (Tlsa(mx.name), Tlsa(mx.name, target="other")))
    return replace(sc, signed=(sc.domain,), tlsa=pairs)


async def _serve_world(
    count: int,
    mx_count: int,
    latency: float,
    dns_latency: float,
    signed: bool = False,
    hosts: int = 0,
) -> None:
    from stspilot.lab.scenarios import BY_DOMAIN, healthy
    from stspilot.lab.world import Lab

    if signed:
        scenarios = [_signed(i, mx_count, hosts) for i in range(count)]
    else:
        scenarios = [healthy(i, mx_count=mx_count) for i in range(count)]  # type: ignore[misc]
    scenarios.append(BY_DOMAIN["enforce-ok.test"])
    async with Lab(scenarios, latency=latency, dns_latency=dns_latency) as lab:
        info = lab.info
        line = {
            "nameserver": info.nameserver,
            "dns_port": info.dns_port,
            "ca_file": str(info.ca_file),
            "https_port": info.https_port,
            "smtp_port": info.smtp_port,
            "trust_anchor": str(info.trust_anchor),
        }
        print(json.dumps(line), flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the parent closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class World:
    """The lab in a child process."""

    def __init__(
        self,
        count: int,
        mx_count: int,
        latency: float,
        dns_latency: float,
        signed: bool = False,
        hosts: int = 0,
    ) -> None:
        argv = [
            sys.executable,
            __file__,
            "--world",
            str(count),
            "--mx-count",
            str(mx_count),
            "--latency-ms",
            str(latency * 1000),
            "--dns-latency-ms",
            str(dns_latency * 1000),
            *(["--world-signed"] if signed else []),
            *(["--world-dane-hosts", str(hosts)] if hosts else []),
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def peak_rss_mib(self) -> float:
        return _proc_peak_rss_mib(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)


def _options(info: dict[str, object], concurrency: int, *, dane: bool = True) -> object:
    from stspilot.check.run import CheckOptions

    return CheckOptions(
        dane=dane,
        trust_anchor=Path(str(info["trust_anchor"])),
        nameserver=str(info["nameserver"]),
        dns_port=int(info["dns_port"]),  # type: ignore[call-overload]
        ca_file=Path(str(info["ca_file"])),
        port_map={443: int(info["https_port"]), 25: int(info["smtp_port"])},  # type: ignore[call-overload]
        concurrency=concurrency,
        dns_timeout=3.0,
    )


def _self_cpu() -> float:
    """CPU of the checker: this process and its finished worker processes."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bulk(count: int, args: argparse.Namespace) -> None:
    from stspilot.check.run import check_domains
    from stspilot.lab.scenarios import healthy

    world = World(count, args.mx_count, args.latency_ms / 1000, args.dns_latency_ms / 1000)
    try:
        options = _options(world.info, args.concurrency, dane=not args.no_dane)
        domains = [healthy(i, mx_count=args.mx_count).domain for i in range(count)]
        walls: list[float] = []
        codes: Counter[str] = Counter()

        def done(result: object) -> None:
            finished = datetime.now(UTC)
            walls.append((finished - result.observed_at).total_seconds())  # type: ignore[attr-defined]
            codes.update(result.codes())  # type: ignore[attr-defined]

        world_cpu0, self_cpu0 = world.cpu(), _self_cpu()
        started = time.perf_counter()
        results = await check_domains(
            domains,
            options=options,  # type: ignore[arg-type]
            on_result=done,
            workers=args.workers,
        )
        elapsed = time.perf_counter() - started
        world_cpu, self_cpu = world.cpu() - world_cpu0, _self_cpu() - self_cpu0
        peak = max(
            resource.getrusage(who).ru_maxrss / 1024
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        print(
            f"bulk {count:>6} domains (mx={args.mx_count}, concurrency={args.concurrency}, "
            f"workers={args.workers or 'auto'}, DANE {'off' if args.no_dane else 'on'}): "
            f"{count / elapsed:7.1f} domains/s in {elapsed:6.2f} s; "
            f"per-domain p50 {statistics.median(walls) * 1000:5.0f} ms, "
            f"p95 {_pct(walls, 0.95) * 1000:5.0f} ms, max {max(walls) * 1000:5.0f} ms"
        )
        print(
            f"      CPU: checker {self_cpu:6.2f} s ({self_cpu / elapsed:4.0%} of a core, "
            f"{self_cpu / count * 1000:5.2f} ms a domain), world {world_cpu:6.2f} s "
            f"({world_cpu / elapsed:4.0%}, {world_cpu / count * 1000:5.2f} ms a domain); "
            f"peak RSS checker {peak:6.1f} MiB (largest process), world "
            f"{world.peak_rss_mib():6.1f} MiB; domains checked: {len(results)}; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        if codes:  # a healthy world has none: these are timeouts of an overloaded machine
            print(f"      findings: {dict(codes.most_common())}")
    finally:
        world.close()


async def _single(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from stspilot.check.run import Probes, check_domain

    world = World(10, args.mx_count, args.latency_ms / 1000, args.dns_latency_ms / 1000)
    try:
        # Each round probes the MX hosts again (a run shares a host's probe between domains).
        options = replace(_options(world.info, 1), mx_probe_reuse=0.0)  # type: ignore[type-var]
        domain = "enforce-ok.test"  # two MX hosts
        async with Probes(options) as probes:  # type: ignore[arg-type]
            await check_domain(domain, probes=probes, options=options)  # type: ignore[arg-type]  # warm-up
            resolver = probes.resolver

            async def timed(coro: object) -> float:
                t = time.perf_counter()
                await coro  # type: ignore[misc]
                return time.perf_counter() - t

            full, steps = [], []
            for _ in range(args.repeat):
                full.append(
                    await timed(check_domain(domain, probes=probes, options=options))  # type: ignore[arg-type]
                )
                lookups = [
                    await timed(resolver.lookup_txt(f"_mta-sts.{domain}")),
                    await timed(resolver.lookup_txt(f"_smtp._tls.{domain}")),
                    await timed(resolver.lookup_mx(domain)),
                ]
                network = [
                    await timed(probes.fetcher.fetch_policy(domain)),
                    await timed(probes.prober.probe_mx(f"mx1.{domain}")),
                    await timed(probes.prober.probe_mx(f"mx2.{domain}")),
                ]
                steps.append(max(lookups) + max(network))
        full_ms, path_ms = statistics.median(full) * 1000, statistics.median(steps) * 1000
        print(
            f"single domain ({domain}, 2 MX): full check {full_ms:5.0f} ms, critical path "
            f"(max(TXT, TLSRPT, MX lookups) + max(policy fetch, each MX probe)) {path_ms:5.0f} ms,"
            f" ratio {full_ms / path_ms:4.2f} (median of {args.repeat})"
        )
    finally:
        world.close()


def _compile_bytecode() -> None:
    """Bytecode as an installed copy has it (pip compiles at install; this machine's sessions
    run with PYTHONDONTWRITEBYTECODE, so a checkout would recompile every module each time)."""
    import stspilot

    package = str(Path(stspilot.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)


def _startup() -> None:
    """Wall time of a fresh interpreter until ``stspilot check`` sends its first packet.

    The real command (``cli.main``, its fast path included), stopped by an audit hook at its
    first socket send or connect: imports, option parsing and the clients (resolver, TLS
    contexts) before the first DNS question. Rendering comes after.
    """
    code = (
        "import time; t = time.perf_counter(); t_cpu = time.process_time()\n"
        "import os, sys\n"
        "def hook(event, args):\n"
        "    if event in ('socket.sendto', 'socket.connect'):\n"
        "        print(time.perf_counter() - t, time.process_time() - t_cpu); os._exit(0)\n"
        "sys.addaudithook(hook)\n"
        "from stspilot.cli import main\n"
        "main(['check', '--nameserver', '127.0.0.1:9', '--no-mx-probe', 'example.com'])\n"
    )
    baseline = "import time; t = time.perf_counter(); print(time.perf_counter() - t)"
    _compile_bytecode()
    runs, cpus, totals = [], [], []
    for _ in range(5):
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        totals.append(time.perf_counter() - t)
        wall, cpu = out.split()
        runs.append(float(wall))
        cpus.append(float(cpu))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", baseline], check=True, capture_output=True)
    bare = time.perf_counter() - t
    print(
        f"start-up: `stspilot check` from interpreter start to its first packet "
        f"{statistics.median(runs) * 1000:4.0f} ms wall, {statistics.median(cpus) * 1000:4.0f} ms"
        f" CPU (median of 5); process start to first packet "
        f"{statistics.median(totals) * 1000:4.0f} ms vs bare interpreter {bare * 1000:4.0f} ms"
    )


# --- memory: a list of every result against the stream ------------------------------------------


def _rss_child(path: str, count: int, info: dict[str, object], workers: int) -> None:
    """One run in a fresh process, output to /dev/null; prints peak RSS and wall time."""
    started = time.perf_counter()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        bad = asyncio.run(_rss_run(path, count, info, workers, sink))
    elapsed = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak = _proc_peak_rss_mib(os.getpid())
    print(json.dumps({"self": peak, "workers": children, "seconds": elapsed, "bad": bad}))


async def _rss_run(
    path: str, count: int, info: dict[str, object], workers: int, sink: TextIO
) -> int:
    from stspilot.check.json_doc import CheckJsonDocument, dumps_check_json
    from stspilot.check.run import check_domains, check_domains_iter
    from stspilot.lab.scenarios import healthy

    options = _options(info, 200)
    domains = [healthy(i, mx_count=1).domain for i in range(count)]
    if path == "list":  # what `stspilot check --json` did: every result, then the document
        results = await check_domains(domains, options=options, workers=workers)  # type: ignore[arg-type]
        sink.write(dumps_check_json(results))
        return sum(r.worst is not None for r in results)
    document = CheckJsonDocument()  # what it does now: each domain written as it comes
    sink.write(document.start())
    stream = check_domains_iter(domains, options=options, workers=workers)  # type: ignore[arg-type]
    async for _, result in stream:
        sink.write(document.entry(result))
    sink.write(document.finish())
    return document.tally.domains - document.tally.clean


def _rss(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.rss_sizes.split(",") if s]
    # No simulated latency: memory depends on what is in flight and what is kept, not on time.
    world = World(max(sizes), args.mx_count, 0.0, 0.0)
    try:
        for count in sizes:
            figures = {}
            for path in ("list", "stream"):
                argv = [
                    sys.executable,
                    __file__,
                    "--rss-child",
                    path,
                    "--rss-count",
                    str(count),
                    "--rss-info",
                    json.dumps(world.info),
                    "--workers",
                    str(args.rss_workers),
                ]
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                figures[path] = json.loads(out.splitlines()[-1])
            listed, streamed = figures["list"], figures["stream"]
            print(
                f"peak RSS {count:>6} domains (no latency, concurrency 200, "
                f"workers={args.rss_workers}, --json to /dev/null): list {listed['self']:6.1f} MiB "
                f"({listed['seconds']:5.1f} s), stream {streamed['self']:6.1f} MiB "
                f"({streamed['seconds']:5.1f} s); domains with findings "
                f"{listed['bad']}/{streamed['bad']}; load {os.getloadavg()[0]:.1f}"
                + (
                    f"; largest worker process {max(listed['workers'], streamed['workers']):.1f}"
                    " MiB"
                    if args.rss_workers > 1
                    else ""
                )
            )
    finally:
        world.close()


def _spread(figures: list[float]) -> str:
    return f"{min(figures):.2f}-{max(figures):.2f} ms"


async def _dane(count: int, args: argparse.Namespace) -> None:
    """Checker CPU per domain with DANE off, then on, over signed domains with TLSA."""
    from stspilot.check.run import check_domains

    hosts = args.dane_mx_hosts
    latency, dns_latency = args.latency_ms / 1000, args.dns_latency_ms / 1000
    world = World(count, args.mx_count, latency, dns_latency, True, hosts)
    try:
        domains = [f"d{i:05d}.bench.test" for i in range(count)]
        cpu: dict[bool, list[float]] = {False: [], True: []}
        found: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
        # A warm-up round, the same for both sides and not counted (the first round pays
        # for imports and the TLS contexts' first loading); then the rounds, the order of off
        # and on alternating so a drift of the machine falls on both sides alike.
        for round_ in range(-args.dane_warmup, args.dane_repeat):
            for dane in (False, True) if round_ % 2 == 0 else (True, False):
                options = _options(world.info, args.concurrency, dane=dane)
                before = _self_cpu()
                results = await check_domains(domains, options=options, workers=1)  # type: ignore[arg-type]
                if round_ < 0:
                    continue
                cpu[dane].append((_self_cpu() - before) / count * 1000)
                for result in results:
                    found[dane].update(result.codes())
        off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
        paired = statistics.median(b / a - 1 for a, b in zip(cpu[False], cpu[True], strict=True))
        print(
            f"dane {count:>6} signed domains "
            f"({f'sharing {hosts} MX hosts' if hosts else f'mx={args.mx_count} each'}, "
            f"concurrency={args.concurrency}, "
            f"{args.dane_repeat} rounds, medians, load {os.getloadavg()[0]:.1f}): checker CPU "
            f"{off:5.2f} ms a domain with DANE off, {on:5.2f} ms with DANE on: {on / off - 1:+.0%} "
            f"(+{on - off:.2f} ms; rounds paired: {paired:+.0%}; off {_spread(cpu[False])}, "
            f"on {_spread(cpu[True])})"
        )
        print(f"      findings off: {dict(found[False])}; on: {dict(found[True])}")
    finally:
        world.close()


def signed_wires(count: int) -> tuple[dict[tuple[str, int], bytes], str]:
    """``count`` zones signed like the DANE bench's (an MX host each, a TLSA pair): each
    domain's DNSKEY, MX, A, AAAA and TLSA DO answers as wire, made in-process by the lab's DNS
    logic, and the DS lines of the lab's trust anchor (also ``bench/dane_instructions.py``)."""
    import dns.message

    from stspilot.lab.dns_server import DnsData, Record
    from stspilot.lab.dnssec import sign_zone

    records, zones = [], []
    for index in range(count):
        domain, host = f"d{index:05d}.bench.test", f"mx1.d{index:05d}.bench.test"
        mine = [
            Record(host, "A", "127.0.0.1"), Record(domain, "MX", f"10 {host}."),
            Record(f"_25._tcp.{host}", "TLSA", f"3 1 1 {index:064x}"),
            Record(f"_25._tcp.{host}", "TLSA", f"3 1 1 {index + 1:064x}"),
        ]  # fmt: skip
        records += mine
        zones.append(sign_zone(domain, mine))
    data = DnsData(records, None, zones)
    wires: dict[tuple[str, int], bytes] = {}
    for index in range(count):
        domain, host = f"d{index:05d}.bench.test.", f"mx1.d{index:05d}.bench.test."
        questions = [(domain, 48), (domain, 15), (host, 1), (host, 28), (f"_25._tcp.{host}", 52)]
        for name, rdtype in questions:
            answer = data.respond(dns.message.make_query(name, rdtype, want_dnssec=True))
            assert answer is not None
            wires[(name, rdtype)] = answer.to_wire(max_size=65535)
    return wires, "\n".join(zone.ds for zone in zones)


def _dane_validator(count: int, args: argparse.Namespace) -> None:
    """The DANE validator alone, no socket: ``count`` zones signed like the bench's (an MX
    host each, a TLSA pair), their DO answers made by the lab's DNS logic in-process as wire,
    then per domain what a check validates (MX RRset, TLSA lookup, address records), every
    answer read from the wire as the resolver reads it. CPU per domain, medians."""
    from stspilot.facts import DnssecStatus, DnsStatus, MxLookup
    from stspilot.probes.dane import DnssecValidator
    from stspilot.probes.dnssec import TrustAnchors
    from stspilot.probes.dnswire_signed import parse_dnssec_message

    wires, anchors = signed_wires(count)

    class Wire:
        async def query_dnssec(self, name: object, rdtype: int) -> object:
            wire = wires.get((str(name).lower(), rdtype))
            return (DnsStatus.SERVFAIL, "no") if wire is None else parse_dnssec_message(wire)

    async def run(size: int) -> float:
        validator = DnssecValidator(Wire(), TrustAnchors.from_text(anchors))  # type: ignore[arg-type]

        async def domain(index: int) -> None:
            name, host = f"d{index:05d}.bench.test", f"mx1.d{index:05d}.bench.test"
            mx = parse_dnssec_message(wires[(f"{name}.", 15)])
            replies = tuple(parse_dnssec_message(wires[(f"{host}.", t)]) for t in (1, 28))
            verdict = await validator.validate_mx(MxLookup(name, DnsStatus.OK), mx)
            lookup = await validator.judge_addresses(await validator.lookup_tlsa(host), replies)
            assert verdict.status is lookup.dnssec.status is DnssecStatus.SECURE
            assert lookup.address_dnssec and lookup.address_dnssec.status is DnssecStatus.SECURE

        before = _self_cpu()
        await asyncio.gather(*(domain(i) for i in range(size)))
        return (_self_cpu() - before) / size * 1000

    asyncio.run(run(min(count, 20)))  # imports
    figures = [asyncio.run(run(count)) for _ in range(args.dane_repeat)]
    print(
        f"dane validator alone, no sockets, {count} signed zones ({args.dane_repeat} rounds, "
        f"medians, load {os.getloadavg()[0]:.1f}): {statistics.median(figures):5.2f} ms CPU a "
        f"domain (DNSKEY, MX, TLSA and A validated; every answer read from the wire)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--workers", type=int, default=None, help="checker processes (default: auto, per CPU)"
    )
    parser.add_argument("--mx-count", type=int, default=1)
    parser.add_argument("--no-dane", action="store_true", help="bulk runs without DANE checks")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--dns-latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip", default="", help="comma list of: bulk,single,startup,rss,dane")
    parser.add_argument("--rss-sizes", default="2000,10000", help="domains for the RSS figure")
    parser.add_argument("--rss-workers", type=int, default=1, help="processes for the RSS runs")
    parser.add_argument("--dane-sizes", default="300", help="signed domains for the DANE figure")
    parser.add_argument("--dane-repeat", type=int, default=3, help="off/on rounds (median)")
    parser.add_argument(
        "--dane-warmup", type=int, default=1, help="off/on rounds first, not counted"
    )
    parser.add_argument(
        "--dane-validator", action="store_true",
        help="DANE figure: the validator alone over the answers as wire, no sockets",
    )  # fmt: skip
    parser.add_argument("--world", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--dane-mx-hosts", type=int, default=0,
        help="DANE figure: the domains share this many MX hosts of one signed provider zone "
        "(0: each domain its own MX host, the worst case)",
    )  # fmt: skip
    parser.add_argument("--world-signed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world-dane-hosts", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rss-count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-info", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        info = json.loads(args.rss_info)
        _rss_child(args.rss_child, args.rss_count, info, args.workers or 1)
        return
    if args.world:
        asyncio.run(
            _serve_world(
                args.world,
                args.mx_count,
                args.latency_ms / 1000,
                args.dns_latency_ms / 1000,
                args.world_signed,
                args.world_dane_hosts,
            )
        )
        return
    skip = set(args.skip.split(","))
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}; latency "
        f"{args.latency_ms:.0f} ms per TCP exchange, {args.dns_latency_ms:.0f} ms per DNS answer"
    )
    if "startup" not in skip:
        _startup()
    if "single" not in skip:
        asyncio.run(_single(args))
    if "bulk" not in skip:
        _compile_bytecode()  # as an installed copy has it: the run imports modules on first use
        for size in (int(s) for s in args.sizes.split(",") if s):
            asyncio.run(_bulk(size, args))
    if "rss" not in skip:
        _rss(args)
    if "dane" not in skip:
        for size in (int(s) for s in args.dane_sizes.split(",") if s):
            if args.dane_validator:
                _dane_validator(size, args)
            else:
                asyncio.run(_dane(size, args))


if __name__ == "__main__":
    main()
