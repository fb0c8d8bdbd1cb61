"""stspilot beside its peers, in one run: checkdmarc, postfix-mta-sts-resolver's ``mta-sts-query``
and parsedmarc, each installed from the package index into a throwaway virtual environment
(never into the project), and nginx for policy serving. Prints figures, never fails on time.

    .venv/bin/python bench/peers.py                      # every comparison (needs root)
    .venv/bin/python bench/peers.py --only parse,ingest --repeat 5
    .venv/bin/python bench/peers.py --peers-venv /tmp/peers   # reuse (or make) that venv

Every comparison is interleaved (peer, stspilot, peer, stspilot ...): each pair runs back to back
under the same load, so the per-round ratio is what counts and the median of those ratios is
printed with the medians of each side and the load average. Whole processes are timed as a user
runs them, from spawn to exit: start-up included, never a warm interpreter's best pass.

The lab answers the peers as it answers stspilot. It runs in a network namespace of its own
(``ip netns``), on the standard ports (DNS 53, HTTPS 443, SMTP 25), and every timed command runs
in that namespace too, where ``/etc/netns/<ns>/resolv.conf`` (which ``ip netns exec`` mounts over
``/etc/resolv.conf``) names the lab's DNS server, and ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``
name the lab CA. So no tool gets a port map or a nameserver option: each uses the system
resolver and CA store. The namespace has only a loopback interface: nothing leaves the machine.

Sections (``--only``):
  startup  spawn to the first DNS packet: stspilot check, mta-sts-query, checkdmarc
  single   one domain, whole process: policy only (mta-sts-query vs check --no-mx-probe) and
           full (checkdmarc --check-mx-tls vs check)
  (with ``--base CHECKOUT``, startup, single and parse also time that checkout's stspilot in
  every round: the same-run A/B of a change, printed as "--base" lines)
  bulk     --bulk domains in one process: checkdmarc --check-mx-tls vs stspilot check -f
  parse    first pass over a fresh --parse-n report corpus in a fresh process (CPU time of the
           parse loop): parsedmarc parse_smtp_tls_report_json vs stspilot parse_report; once
           with the generator's recurring addresses and once with an address of its own for
           every failure detail (half of them IPv6)
  ingest   --ingest-n files (.json.gz, then .eml), whole process: parsedmarc parse_report_file
           over the folder (parse only, it has no store) vs ``stspilot ingest`` into a new
           SQLite store, into an existing one (at the newest schema), and into PostgreSQL
           with --pg
  serve    policy GETs, one worker each, keep-alive, wrk: nginx serving the file vs
           ``stspilot serve`` as shipped
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = ("checkdmarc", "postfix-mta-sts-resolver", "parsedmarc")
ONE = "enforce-ok.test"
SECTIONS = ("startup", "single", "bulk", "parse", "ingest", "serve")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_line(
    label: str,
    peer: str,
    peer_values: list[float],
    ours: list[float],
    unit: str,
    higher_is_better: bool,
) -> None:
    """Medians of both sides and the median of the per-round ratios (> 1: stspilot ahead)."""
    ratios = [
        (o / p if higher_is_better else p / o) for p, o in zip(peer_values, ours, strict=False)
    ]
    fmt = (lambda v: f"{v:,.0f}") if unit.endswith("/s") else (lambda v: f"{v:.3f}")
    print(
        f"  {label}: {peer} median {fmt(median(peer_values))} {unit}"
        f" [{', '.join(fmt(v) for v in peer_values)}] | stspilot median {fmt(median(ours))} {unit}"
        f" [{', '.join(fmt(v) for v in ours)}] | stspilot {median(ratios):.2f}x"
        f" ({min(ratios):.2f}-{max(ratios):.2f}) {'faster' if median(ratios) >= 1 else 'SLOWER'}"
        f" | {load()}",
        flush=True,
    )


# --- the peers' virtual environment ---------------------------------------------------------------


def peers_venv(path: Path | None) -> Path:
    """A venv holding the peers, made with the ordinary client from the package index."""
    venv = path or Path(tempfile.gettempdir()) / "stspilot-peers-venv"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mta-sts-query").exists() or not (venv / "bin" / "checkdmarc").exists():
        print(f"installing {', '.join(PEERS)} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEERS],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    versions = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {p.lower().replace("-", "_") for p in PEERS}
    found = [
        f"{d['name']} {d['version']}"
        for d in json.loads(versions)
        if d["name"].lower().replace("-", "_") in wanted
    ]
    print("peers: " + ", ".join(sorted(found)), flush=True)
    return venv


# --- the lab in a network namespace -------------------------------------------------------------


async def _serve_world(count: int, latency: float, dns_latency: float) -> None:
    import asyncio

    from stspilot.lab.scenarios import BY_DOMAIN, healthy
    from stspilot.lab.world import Lab

    scenarios = [BY_DOMAIN[ONE]] + [healthy(i) for i in range(count)]
    lab = Lab(scenarios, latency=latency, dns_latency=dns_latency, standard_ports=True)
    async with lab:
        info = lab.info
        line = {"nameserver": info.nameserver, "ca_file": str(info.ca_file)}
        line["healthy"] = [sc.domain for sc in scenarios[1:]]
        print(json.dumps(line), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class Namespace:
    """A network namespace with loopback up, the lab running inside it on standard ports and
    a resolv.conf naming the lab DNS; ``run`` times a command inside it."""

    def __init__(self, venv: Path, count: int, latency: float, dns_latency: float) -> None:
        if os.geteuid() != 0:
            raise SystemExit(
                "bench/peers.py needs root (ip netns, ports 25/53/443 in the namespace)"
            )
        self.name = f"stspilot-peers-{os.getpid()}"
        self.startup_name = self.name + "-s"  # the start-up section's own namespace
        self.etc = Path("/etc/netns") / self.name
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.exec = ["ip", "netns", "exec", self.name]
        subprocess.run([*self.exec, "ip", "link", "set", "lo", "up"], check=True)
        self.world = subprocess.Popen(
            [
                *self.exec,
                sys.executable,
                __file__,
                "--world",
                str(count),
                "--latency-ms",
                str(latency * 1000),
                "--dns-latency-ms",
                str(dns_latency * 1000),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.world.stdout is not None
        info = json.loads(self.world.stdout.readline())
        self.nameserver = str(info["nameserver"])
        self.ca_file = str(info["ca_file"])
        self.healthy: list[str] = info["healthy"]
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(f"nameserver {self.nameserver}\n")
        self.env = {
            **os.environ,
            "SSL_CERT_FILE": self.ca_file,
            "REQUESTS_CA_BUNDLE": self.ca_file,
            "PYTHONWARNINGS": "ignore",
        }
        self.venv = venv

    def peer(self, tool: str) -> str:
        return str(self.venv / "bin" / tool)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        check_output: Callable[[str], bool] | None = None,
    ) -> tuple[float, float]:
        """Wall and CPU (user + system) seconds from spawn to exit of ``argv`` in the
        namespace. Both count: wall is what the user waits, CPU what load does not change."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [*self.exec, *argv],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=1800,
        )
        took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if check_output is not None and not check_output(done.stdout):
            raise RuntimeError(
                f"{argv[0]} did not give the expected answer (exit {done.returncode}):\n"
                f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
            )
        return took, cpu

    def close(self) -> None:
        if self.world.stdin is not None:
            with contextlib.suppress(OSError):
                self.world.stdin.close()
        try:
            self.world.wait(15)
        except subprocess.TimeoutExpired:
            self.world.kill()
        shutil.rmtree(self.etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


STSPILOT = [str(Path(sys.executable).parent / "stspilot")]


def compile_bytecode() -> None:
    """Write stspilot's bytecode as ``pip install`` does for the peers (and for a user's
    stspilot): a source checkout run with PYTHONDONTWRITEBYTECODE set (as this machine's
    sessions are) otherwise recompiles ~30 modules in every timed process, ~0.1-0.2 s of CPU
    that no installed copy pays."""
    import stspilot

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(stspilot.__file__).parent)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- start-up: spawn to the first DNS packet ----------------------------------------------------


def first_packet(ns: Namespace, argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds from spawn until the command's first DNS question reaches a UDP socket on
    127.0.0.1:53 inside a second namespace (the command is killed there: start-up only)."""
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('127.0.0.1',53))\n"
        "print('ready',flush=True);s.recv(4096);print(time.time(),flush=True)\n"
    )
    listener = subprocess.Popen(
        ["ip", "netns", "exec", ns.startup_name, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None
    listener.stdout.readline()
    started = time.time()
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.startup_name, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**ns.env, **(env or {})},
        start_new_session=True,
    )
    try:
        arrived = float(listener.stdout.readline())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        listener.kill()
        listener.wait()
    return arrived - started


def section_startup(ns: Namespace, args: argparse.Namespace) -> None:
    print(f"\n== start-up: spawn to the first DNS packet, {args.repeat} rounds", flush=True)
    subprocess.run(["ip", "netns", "add", ns.startup_name], check=True)
    etc = Path("/etc/netns") / ns.startup_name
    try:
        subprocess.run(
            ["ip", "netns", "exec", ns.startup_name, "ip", "link", "set", "lo", "up"], check=True
        )
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        bare = [
            first_packet(ns, [sys.executable, "-c", "import socket;socket.getaddrinfo('x.test',1)"])
            for _ in range(3)
        ]
        print(f"  bare interpreter + getaddrinfo: median {median(bare):.3f} s", flush=True)
        pairs = (
            (
                "mta-sts-query",
                [ns.peer("mta-sts-query"), ONE],
                [*STSPILOT, "check", "--no-mx-probe", ONE],
            ),
            (
                "checkdmarc",
                [ns.peer("checkdmarc"), "--check-mx-tls", ONE],
                [*STSPILOT, "check", ONE],
            ),
        )
        for peer, peer_argv, ours_argv in pairs:
            theirs, ours, base = [], [], []
            for _ in range(args.repeat):
                theirs.append(first_packet(ns, peer_argv))
                ours.append(first_packet(ns, ours_argv))
                if args.base:
                    base.append(first_packet(ns, ours_argv, _base_env(args)))
            ratio_line("first packet", peer, theirs, ours, "s", higher_is_better=False)
            if base:
                ratio_line("first packet", "--base", base, ours, "s", higher_is_better=False)
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", ns.startup_name], check=False)


def _base_env(args: argparse.Namespace) -> dict[str, str]:
    """Run stspilot from ``--base``'s source tree (another checkout: the code before a change)
    with this one's interpreter and packages."""
    return {"PYTHONPATH": str(Path(args.base).resolve() / "src")}


# --- single domain and bulk ---------------------------------------------------------------------


def _has_policy(out: str) -> bool:
    return "STS_OK" in out or "enforce" in out


def _stspilot_checked(out: str) -> bool:
    return ONE in out or "checked" in out or "stage" in out


def section_single(ns: Namespace, args: argparse.Namespace) -> None:
    print(f"\n== one domain ({ONE}), whole process, {args.repeat} rounds", flush=True)
    rounds = (
        (
            "policy only",
            "mta-sts-query",
            [ns.peer("mta-sts-query"), ONE],
            [*STSPILOT, "check", "--no-mx-probe", ONE],
        ),
        (
            "full check",
            "checkdmarc --check-mx-tls",
            [ns.peer("checkdmarc"), "--check-mx-tls", ONE],
            [*STSPILOT, "check", ONE],
        ),
    )
    for label, peer, peer_argv, ours_argv in rounds:
        theirs, ours, base = [], [], []
        for i in range(args.repeat):
            check = _has_policy if i == 0 else None
            theirs.append(ns.run(peer_argv, check_output=check))
            ours.append(ns.run(ours_argv, check_output=_stspilot_checked if i == 0 else None))
            if args.base:  # the same command, the other code, in the same round
                base.append(ns.run(ours_argv, env=_base_env(args)))
        for against, values in ((peer, theirs), ("--base", base)):
            if not values:
                continue
            for n, unit in ((0, "wall"), (1, "CPU")):
                ratio_line(
                    f"{label}, {unit}",
                    against,
                    [v[n] for v in values],
                    [v[n] for v in ours],
                    "s",
                    higher_is_better=False,
                )


def section_bulk(ns: Namespace, args: argparse.Namespace) -> None:
    domains = ns.healthy[: args.bulk]
    print(
        f"\n== bulk: {len(domains)} healthy lab domains in one process, MX TLS on,"
        f" {args.bulk_repeat} rounds",
        flush=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(domains) + "\n")
    try:
        theirs, ours, theirs_cpu, ours_cpu = [], [], [], []
        for i in range(args.bulk_repeat):
            took, cpu = ns.run(
                [ns.peer("checkdmarc"), "--check-mx-tls", *domains],
                check_output=(lambda o: o.count("policy") >= len(domains)) if i == 0 else None,
            )
            theirs.append(len(domains) / took)
            theirs_cpu.append(cpu * 1000 / len(domains))
            took, cpu = ns.run(
                [*STSPILOT, "check", "--jsonl", "-f", f.name],
                check_output=(lambda o: len(o.splitlines()) == len(domains)) if i == 0 else None,
            )
            ours.append(len(domains) / took)
            ours_cpu.append(cpu * 1000 / len(domains))
        ratio_line(
            "wall", "checkdmarc --check-mx-tls", theirs, ours, "domains/s", higher_is_better=True
        )
        ratio_line(
            "CPU a domain (whole process)",
            "checkdmarc --check-mx-tls",
            theirs_cpu,
            ours_cpu,
            "ms",
            higher_is_better=False,
        )
    finally:
        os.unlink(f.name)


# --- first-pass parsing ---------------------------------------------------------------------------

PARSE_CHILD = r"""
import marshal, sys, time
items = marshal.load(open(sys.argv[1], "rb"))
if sys.argv[2] == "parsedmarc":
    from parsedmarc import parse_smtp_tls_report_json as parse
else:
    from stspilot.tlsrpt.reports import parse_report as parse
wall, cpu = time.perf_counter(), time.process_time()
for item in items:
    parse(item)
print(len(items) / (time.process_time() - cpu), len(items) / (time.perf_counter() - wall))
"""


def _fresh_addresses(report: dict[str, object], rng: random.Random) -> None:
    """An address of its own for every failure detail: half IPv4, half IPv6 (compressed, as
    reporters write them), so no memo or cache helps the first pass."""
    for policy in report["policies"]:  # type: ignore[attr-defined]
        for detail in policy.get("failure-details", ()):
            for key in ("sending-mta-ip", "receiving-ip"):
                if key in detail:
                    if rng.random() < 0.5:
                        detail[key] = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
                    else:
                        words = [f"{rng.getrandbits(16):x}" for _ in range(5)]
                        detail[key] = "2001:db8:" + ":".join(words[:2]) + "::" + ":".join(words[2:])


def write_parse_corpus(path: Path, n: int, seed: int, fresh_addresses: bool) -> None:
    import marshal

    from stspilot.lab.sample_reports import generate_reports, to_json_bytes

    rng = random.Random(seed)
    domains = [f"d{i}.example" for i in range(max(1, n // 20))]
    items = []
    for report in generate_reports(n, seed=seed, domains=domains):
        if fresh_addresses:
            _fresh_addresses(report, rng)
        items.append(to_json_bytes(report))
    path.write_bytes(marshal.dumps(items))


def section_parse(ns: Namespace, args: argparse.Namespace) -> None:
    print(
        f"\n== first-pass parse: {args.parse_n} reports, a fresh corpus and a fresh process"
        f" each round (CPU rate of the parse loop), {args.repeat} rounds",
        flush=True,
    )
    peer_python = ns.peer("python")
    with tempfile.TemporaryDirectory(prefix="stspilot-peers-parse-") as tmp:
        for fresh in (False, True):
            theirs: list[float] = []
            ours: list[float] = []
            base: list[float] = []
            for i in range(args.repeat):
                corpus = Path(tmp) / f"corpus-{fresh}-{i}.marshal"
                write_parse_corpus(corpus, args.parse_n, seed=1000 + i, fresh_addresses=fresh)
                runs: list[tuple[str, str, list[float], dict[str, str]]] = [
                    (peer_python, "parsedmarc", theirs, {}),
                    (sys.executable, "stspilot", ours, {}),
                ]
                if args.base:  # the same child, the other checkout's code, in the same round
                    runs.append((sys.executable, "stspilot", base, _base_env(args)))
                # Rotate who goes first: a round's later processes may find caches warmer.
                shift = i % len(runs)
                for python, which, into, env in runs[shift:] + runs[:shift]:
                    out = subprocess.run(
                        [*ns.exec, python, "-c", PARSE_CHILD, str(corpus), which],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**ns.env, **env},
                    ).stdout
                    into.append(float(out.split()[0]))
            label = "addresses of their own" if fresh else "lab generator's addresses"
            ratio_line(label, "parsedmarc", theirs, ours, "reports/s", higher_is_better=True)
            if base:
                ratio_line(label, "--base", base, ours, "reports/s", higher_is_better=True)


# --- whole-process ingest -----------------------------------------------------------------------

INGEST_CHILD = r"""
import os, sys
from parsedmarc import parse_report_file
n = 0
for name in sorted(os.listdir(sys.argv[1])):
    parse_report_file(os.path.join(sys.argv[1], name), offline=True)
    n += 1
print(n)
"""


def _pg_database(base: str, name: str, create: bool) -> str:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        if create:
            conn.execute(f'create database "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def _run_here(
    argv: Sequence[str], check_output: Callable[[str], bool] | None = None
) -> tuple[float, float]:
    """``Namespace.run`` outside the lab's namespace: ingest needs no lab, and PostgreSQL
    listens in this namespace (inside the lab's, stspilot could not reach it: until
    2026-12-07 the PostgreSQL rows timed a refused connection, unchecked)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1) or (
        check_output is not None and not check_output(done.stdout)
    ):
        raise RuntimeError(
            f"{argv[0]} did not give the expected answer (exit {done.returncode}):\n"
            f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        )
    return took, cpu


def section_ingest(ns: Namespace, args: argparse.Namespace) -> None:
    from stspilot.lab.sample_reports import write_corpus

    n = args.ingest_n
    print(
        f"\n== ingest: {n} files a round, whole process from the shell, {args.repeat} rounds;"
        f" parsedmarc parses only (no store)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="stspilot-peers-ingest-") as tmp:
        for fmt in ("json.gz", "eml"):
            folder = Path(tmp) / fmt
            write_corpus(
                folder,
                n,
                seed=31,
                formats=(fmt,),
                domains=[f"d{i}.example" for i in range(max(1, n // 20))],
            )
            theirs, ours, ours_pg, ours_existing = [], [], [], []
            theirs_cpu, ours_cpu, pg_cpu, existing_cpu = [], [], [], []
            for i in range(args.repeat):
                took, cpu = _run_here(
                    [ns.peer("python"), "-c", INGEST_CHILD, str(folder)],
                    check_output=lambda o: o.strip() == str(n),
                )
                theirs.append(n / took)
                theirs_cpu.append(n / cpu)
                db = Path(tmp) / f"ingest-{fmt}-{i}.sqlite"
                took, cpu = _run_here(
                    [*STSPILOT, "ingest", "--db", str(db), str(folder)],
                    check_output=lambda o: str(n) in o.replace(",", ""),
                )
                ours.append(n / took)
                ours_cpu.append(n / cpu)
                db.unlink()
                for extra in ("-wal", "-shm"):
                    Path(str(db) + extra).unlink(missing_ok=True)
                # A store that exists at the newest schema (made by an untimed ingest of an
                # empty folder), as a daily or re-run ingest finds it: no migration to run.
                empty = Path(tmp) / "empty"
                empty.mkdir(exist_ok=True)
                _run_here([*STSPILOT, "ingest", "--db", str(db), str(empty)])
                took, cpu = _run_here(
                    [*STSPILOT, "ingest", "--db", str(db), str(folder)],
                    check_output=lambda o: f"{n} new" in o.replace(",", ""),
                )
                ours_existing.append(n / took)
                existing_cpu.append(n / cpu)
                for extra in ("", "-wal", "-shm"):
                    Path(str(db) + extra).unlink(missing_ok=True)
                if args.pg:
                    url = _pg_database(args.pg, f"peers_ingest_{os.getpid()}", create=True)
                    took, cpu = _run_here(
                        [*STSPILOT, "ingest", "--db", url, str(folder)],
                        check_output=lambda o: f"{n} new" in o.replace(",", ""),
                    )
                    ours_pg.append(n / took)
                    pg_cpu.append(n / cpu)
                    _pg_database(args.pg, f"peers_ingest_{os.getpid()}", create=False)
            peer = "parsedmarc (parse only)"
            ratio_line(f".{fmt} into SQLite, wall", peer, theirs, ours, "reports/s", True)
            ratio_line(
                f".{fmt} into SQLite, per CPU-second (all processes)",
                peer,
                theirs_cpu,
                ours_cpu,
                "reports/s",
                True,
            )
            ratio_line(
                f".{fmt} into an existing SQLite store, wall",
                peer,
                theirs,
                ours_existing,
                "reports/s",
                True,
            )
            ratio_line(
                f".{fmt} into an existing SQLite store, per CPU-second",
                peer,
                theirs_cpu,
                existing_cpu,
                "reports/s",
                True,
            )
            if ours_pg:
                ratio_line(
                    f".{fmt} into PostgreSQL, wall", peer, theirs, ours_pg, "reports/s", True
                )
                ratio_line(
                    f".{fmt} into PostgreSQL, per CPU-second of stspilot's processes",
                    peer,
                    theirs_cpu,
                    pg_cpu,
                    "reports/s",
                    True,
                )


# --- policy serving -----------------------------------------------------------------------------


@contextlib.contextmanager
def _serving(server: object) -> Iterator[object]:
    try:
        yield server
    finally:
        server.stop()  # type: ignore[attr-defined]


def _group_cpu(server: Any) -> float:
    """CPU seconds (user + system) of a server's process group so far."""
    total = 0
    for pid in server.pids():
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def section_serve(ns: Namespace, args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    import web_load

    web_load.ensure_tools()
    print(
        f"\n== policy GET: one worker each, keep-alive, wrk -t{args.threads}"
        f" -c{args.connections} -d{args.duration}s, {args.repeat} rounds",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="stspilot-peers-serve-") as tmp:
        root = Path(tmp)
        db = str(root / "serve.sqlite")
        policy = web_load.prepare_store(db)
        policy_file = root / "www" / "mta-sts.txt"
        policy_file.parent.mkdir()
        policy_file.write_text(policy)
        script = root / "get.lua"
        script.write_text(web_load.GET_LUA)
        wrk_args = argparse.Namespace(
            threads=args.threads, connections=args.connections, duration=args.duration
        )
        theirs, ours, theirs_cpu, ours_cpu = [], [], [], []

        def timed(server: Any) -> tuple[float, float]:
            """(requests/s, server CPU microseconds a request) of one wrk run."""
            web_load.check_policy(server, policy)
            before = _group_cpu(server)
            figures = web_load.wrk_get(server, wrk_args, script)
            used = _group_cpu(server) - before
            return figures.rps, used / (figures.rps * args.duration) * 1e6

        for i in range(args.repeat):
            with _serving(web_load.start_nginx(root, policy_file, 1, f"n{i}")) as nginx:
                rps, cpu = timed(nginx)
                theirs.append(rps)
                theirs_cpu.append(cpu)
            port = web_load.free_port()
            app = web_load.Server(
                "stspilot serve",
                [*STSPILOT, "serve", "--listen", f"127.0.0.1:{port}", "--db", db],
                port=port,
                log=root / f"serve-{i}.log",
                env={"STSPILOT_SECRET_KEY": "peers-bench-secret-key-0123456789abcdef"},
            )
            with _serving(app):
                rps, cpu = timed(app)
                ours.append(rps)
                ours_cpu.append(cpu)
        ratio_line("requests/s", "nginx", theirs, ours, "req/s", higher_is_better=True)
        ratio_line(
            "server CPU a request", "nginx", theirs_cpu, ours_cpu, "us", higher_is_better=False
        )
        print("  (target: stspilot >= 0.6x nginx)")
        if shutil.which("caddy") and shutil.which("openssl"):
            _serve_through_caddy(args, root, db, policy, policy_file, script, wrk_args)


def _caddy(root: Path, tag: str, cert: Path, key: Path, site: str) -> Any:
    """Caddy on a free port: TLS with ``cert`` for every name, then ``site`` directives."""
    import web_load

    port = web_load.free_port()
    home = root / f"caddy-{tag}"
    home.mkdir()
    conf = home / "Caddyfile"
    conf.write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n"
        f"https://:{port} {{\n\ttls {cert} {key}\n\t{site}\n}}\n"
    )
    env = {"XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home), "HOME": str(home)}
    argv = ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"]
    return web_load.Server(f"caddy-{tag}", argv, port=port, log=home / "log", env=env)


def _serve_through_caddy(
    args: argparse.Namespace,
    root: Path,
    db: str,
    policy: str,
    policy_file: Path,
    script: Path,
    wrk_args: argparse.Namespace,
) -> None:
    """Policy GETs over TLS (keep-alive, wrk): Caddy serving the file itself beside Caddy
    proxying to ``stspilot serve``; CPU a request of Caddy's process (and the app's)."""
    import web_load

    print("\n-- through Caddy with TLS (a self-signed certificate; keep-alive)", flush=True)
    cert, key = root / "cert.pem", root / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subject = f"/CN={web_load.POLICY_HOST}"
    subprocess.run(
        [
            *openssl,
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            subject,
        ],
        check=True,
        capture_output=True,
    )
    file_rps, app_rps, file_cpu, app_cpu = [], [], [], []
    for i in range(args.repeat):
        site = f"root * {policy_file.parent}\n\tfile_server"
        with _serving(_caddy(root, f"file{i}", cert, key, site)) as caddy:
            before = _group_cpu(caddy)
            figures = web_load.wrk_get(caddy, wrk_args, script, scheme="https")
            file_rps.append(figures.rps)
            file_cpu.append((_group_cpu(caddy) - before) / (figures.rps * args.duration) * 1e6)
        port = web_load.free_port()
        app = web_load.Server(
            "stspilot serve",
            [*STSPILOT, "serve", "--listen", f"127.0.0.1:{port}", "--db", db],
            port=port,
            log=root / f"serve-caddy-{i}.log",
            env={"STSPILOT_SECRET_KEY": "peers-bench-secret-key-0123456789abcdef"},
        )
        with _serving(app):
            web_load.check_policy(app, policy)
            site = f"reverse_proxy 127.0.0.1:{port}"
            with _serving(_caddy(root, f"proxy{i}", cert, key, site)) as caddy:
                before = _group_cpu(caddy) + _group_cpu(app)
                figures = web_load.wrk_get(caddy, wrk_args, script, scheme="https")
                used = _group_cpu(caddy) + _group_cpu(app) - before
                app_rps.append(figures.rps)
                app_cpu.append(used / (figures.rps * args.duration) * 1e6)
    peer = "Caddy serving the file"
    ratio_line("requests/s over TLS", peer, file_rps, app_rps, "req/s", higher_is_better=True)
    ratio_line(
        "CPU a request (Caddy, plus the app behind it)",
        peer,
        file_cpu,
        app_cpu,
        "us",
        higher_is_better=False,
    )


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma list of sections")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each comparison")
    parser.add_argument("--peers-venv", type=Path, help="venv for the peers (made if missing)")
    parser.add_argument("--latency-ms", type=float, default=40.0, help="lab TCP exchange delay")
    parser.add_argument("--dns-latency-ms", type=float, default=20.0, help="lab DNS delay")
    parser.add_argument("--bulk", type=int, default=40, help="domains in the bulk comparison")
    parser.add_argument("--bulk-repeat", type=int, default=2)
    parser.add_argument("--parse-n", type=int, default=10000)
    parser.add_argument("--ingest-n", type=int, default=10000)
    parser.add_argument(
        "--pg",
        default=os.environ.get("STSPILOT_BENCH_PG", ""),
        help="PostgreSQL server URL (a database is made per round)",
    )
    parser.add_argument("--duration", type=int, default=8, help="wrk seconds a round")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--base",
        help="a second checkout (e.g. `git worktree add /tmp/base main`): startup, single and"
        " parse also run its stspilot in every round, for a same-run A/B against this code",
    )
    parser.add_argument("--world", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.world >= 0:
        import asyncio

        asyncio.run(_serve_world(args.world, args.latency_ms / 1000, args.dns_latency_ms / 1000))
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    print(f"stspilot beside its peers; {os.cpu_count()} CPUs; {load()}", flush=True)
    # An installed stspilot has bytecode; a work tree under PYTHONDONTWRITEBYTECODE=1 (as these
    # sessions run) would compile ~75 of its modules again in every timed process (~0.3 s of
    # CPU each, measured) while the peers' packages, installed by pip, have theirs.
    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    if args.base:
        compileall.compile_dir(str(Path(args.base) / "src"), quiet=1)
    venv = peers_venv(args.peers_venv)
    compile_bytecode()
    needs_lab = {"startup", "single", "bulk"} & set(only)
    ns = Namespace(
        venv, args.bulk if needs_lab else 0, args.latency_ms / 1000, args.dns_latency_ms / 1000
    )
    try:
        if needs_lab:
            print(
                f"lab: DNS {ns.nameserver}:53, HTTPS 443, SMTP 25 in netns {ns.name};"
                f" latency {args.latency_ms:g} ms a TCP exchange, {args.dns_latency_ms:g} ms"
                f" a DNS answer",
                flush=True,
            )
        for name in only:
            globals()[f"section_{name}"](ns, args)
    finally:
        ns.close()
    print(f"\ndone; {load()}")


if __name__ == "__main__":
    main()
