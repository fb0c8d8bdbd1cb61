"""The monitor scaled out: one round over N lab domains on PostgreSQL, by 1 and then by 2 worker
processes (as on separate machines: each its own process, store connection and probes, the
database the only thing they share), and a round in which one of 2 workers is killed (SIGKILL)
mid-round. Prints domains/s, database transactions per domain, claims that collided (a domain
checked twice in the round) or were lost (a domain never checked), and what the killed worker
left behind: the domains it held, picked up by the other worker once their leases expired.
Prints figures only; it never fails on time.

    .venv/bin/python bench/monitor_scale.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/monitor_scale.py --domains 100000 --workers 1,2 --kill --window 180

``--window S`` stops each round after S seconds of work (a round over 100,000 domains takes
hours on a shared 2-core machine): domains/s is then the checks stored in the window over its
length, "unchecked" counts the domains nobody reached yet (not a loss), and "lost" counts the
domains released without a stored check (none should be). In the kill round the window must
outlast the lease, so that the killed worker's domains come back to the other worker.
``--lab-domains L`` makes the lab serve only the first L domains (claims go in name order, so
a window that checks fewer than L reaches no other): the lab builds a host, a certificate and
records per domain, and 100,000 of those do not fit this machine's memory and time; the
schedule still holds every enrolled domain, and every claim is made against all of them.

The lab (check_bench.World: 40 ms a TCP exchange, 20 ms a DNS answer) runs in its own process.
Each worker loops ``run_once`` (batches of --batch, --concurrency in flight) on a clock that
moves with the wall clock, until nothing is due; a fresh database is made for each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from check_bench import World, _options  # noqa: E402

START = datetime.now(UTC).replace(microsecond=0)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- one worker process -------------------------------------------------------------------------


async def work(args: argparse.Namespace) -> None:
    """Claim, check and finish until no domain is due (leases of a dead worker included)."""
    from stspilot.monitor.loop import MonitorConfig, run_once
    from stspilot.store import Store

    info = {
        "nameserver": args.nameserver,
        "dns_port": args.dns_port,
        "ca_file": args.ca_file,
        "trust_anchor": args.trust_anchor,
        "https_port": args.https_port,
        "smtp_port": args.smtp_port,
    }
    options = _options(info, args.concurrency)
    config = MonitorConfig(
        batch_size=args.batch,
        concurrency=args.concurrency,
        lease=timedelta(seconds=args.lease),
        enroll_hosted=False,
        worker=args.worker,
    )
    offset = START - datetime.now(UTC)
    checked = idle = 0
    with Store.open(args.url, migrate=False) as store:
        while not args.until or time.time() < args.until:
            tally = await run_once(
                store,
                options=options,  # type: ignore[arg-type]
                now=datetime.now(UTC) + offset,
                config=config,
            )
            checked += tally.checked
            if tally.claimed:
                idle = 0
                continue
            if due(store) == 0:
                break
            idle += 1  # due but claimed: another worker's (or a dead one's) lease
            await asyncio.sleep(1.0)
    print(f"{args.worker} checked {checked}", flush=True)


def due(store: object) -> int:
    from sqlalchemy import func, select

    from stspilot.store.monitor import monitor_domains

    c = monitor_domains.c
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        return int(
            conn.execute(
                select(func.count()).where(c.next_run_at <= now + timedelta(minutes=1))
            ).scalar_one()
        )


# --- the coordinator ----------------------------------------------------------------------------


def fresh_database(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        conn.execute(f'create database "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    return url if "+psycopg" in url else url.replace("postgresql://", "postgresql+psycopg://", 1)


def drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def commits(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "select xact_commit from pg_stat_database"
                        " where datname = current_database()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def outcome(url: str) -> tuple[int, int, int, int, int]:
    """(domains checked once, checked more than once, never checked, still claimed, released
    without a check: lost)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = dict(
                conn.execute(
                    text(
                        "select n, count(*) from (select m.domain, count(c.domain) n"
                        " from monitor_domains m left join checks c on c.domain = m.domain"
                        " group by m.domain) t group by n"
                    )
                ).all()
            )
            claimed = conn.execute(
                text("select count(*) from monitor_domains where claim_token is not null")
            ).scalar_one()
            # Released (last_run_at set, no claim) yet no check stored: a lost domain.
            lost = conn.execute(
                text(
                    "select count(*) from monitor_domains m where m.claim_token is null"
                    " and m.last_run_at is not null"
                    " and not exists (select 1 from checks c where c.domain = m.domain)"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    once = int(counts.get(1, 0))
    more = int(sum(v for k, v in counts.items() if k > 1))
    never = int(counts.get(0, 0))
    return once, more, never, int(claimed), int(lost)


def checked_among(url: str, domains: set[str]) -> int:
    """How many of ``domains`` have a stored check."""
    from sqlalchemy import create_engine, text

    if not domains:
        return 0
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("select count(distinct domain) from checks where domain = any(:d)"),
                    {"d": sorted(domains)},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def held_by(url: str, worker: str) -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("select domain from monitor_domains where claimed_by = :w"), {"w": worker}
            ).all()
    finally:
        engine.dispose()
    return {r[0] for r in rows}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_round(args: argparse.Namespace, world: World, workers: int, kill: bool) -> None:
    from stspilot.lab.scenarios import healthy
    from stspilot.monitor.loop import add_domain
    from stspilot.store import Store

    name = f"monitor_scale_{os.getpid()}"
    url = fresh_database(args.pg, name)
    try:
        domains = [healthy(i, mx_count=1).domain for i in range(args.domains)]
        with Store.open(url) as store:
            for k in range(0, len(domains), 5000):
                add_domain(store, domains[k : k + 5000], now=START - timedelta(hours=1))
        info = world.info
        base_argv = [
            sys.executable,
            __file__,
            "--work",
            "--url",
            url,
            "--nameserver",
            str(info["nameserver"]),
            "--dns-port",
            str(info["dns_port"]),
            "--ca-file",
            str(info["ca_file"]),
            "--trust-anchor",
            str(info["trust_anchor"]),
            "--https-port",
            str(info["https_port"]),
            "--smtp-port",
            str(info["smtp_port"]),
            "--batch",
            str(args.batch),
            "--concurrency",
            str(args.concurrency),
            "--lease",
            str(args.lease),
            "--until",
            "0",
        ]
        before = commits(url)
        started = time.perf_counter()
        if args.window:
            base_argv[-1] = str(time.time() + args.window)
        cpu_before = _children_cpu()
        procs = [
            subprocess.Popen(
                [*base_argv, "--worker", f"w{k + 1}"], stdout=subprocess.PIPE, text=True
            )
            for k in range(workers)
        ]
        orphaned: set[str] = set()
        if kill:
            # Killed mid-batch: once it holds claims, --kill-after seconds into its work.
            deadline = time.monotonic() + 120
            while not held_by(url, "w1") and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(args.kill_after)
            orphaned = held_by(url, "w1")
            procs[0].send_signal(signal.SIGKILL)
        outs = [p.communicate()[0].strip() for p in procs]
        wall = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        transactions = commits(url) - before
        once, more, never, claimed, lost = outcome(url)
        done = once + more
        label = f"{workers} worker{'s' if workers > 1 else ''}" + (", w1 killed" if kill else "")
        # A claim collides when two workers hold one domain at once: the claim's conditional
        # UPDATE makes that impossible while a lease runs, so a second check of a domain in
        # one round means its lease ran out (or its worker died after storing the check).
        what = (
            f"{done} of {args.domains} domains checked in a {wall:.1f} s window"
            if args.window
            else f"{args.domains} domains in {wall:.1f} s"
        )
        print(
            f"  {label}: {what} = {done / wall:,.1f} domains/s;"
            f" workers' CPU {cpu / max(done, 1) * 1000:.1f} ms a domain;"
            f" {transactions / max(done, 1):.1f} database transactions a domain;"
            f" checked once {once}, twice or more (collided) {more}, lost (released without a"
            f" check) {lost}, {'not reached yet' if args.window else 'never checked'} {never},"
            f" still claimed {claimed} | {'; '.join(o for o in outs if o)} | {load()}",
            flush=True,
        )
        if kill:
            back = checked_among(url, orphaned)
            print(
                f"    w1 killed after {args.kill_after:g} s holding {len(orphaned)} claimed"
                f" domains; their leases ({args.lease:g} s) expired and w2 checked {back} of"
                f" them; lost {lost}, left claimed {claimed}",
                flush=True,
            )
    finally:
        drop_database(args.pg, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=os.environ.get("STSPILOT_BENCH_PG", ""))
    parser.add_argument("--domains", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--kill", action="store_true", help="also a round with w1 killed")
    parser.add_argument(
        "--kill-after", type=float, default=2.0, help="seconds after w1's first claim"
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a claim holds")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--dns-latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--window", type=float, default=0.0, help="stop each round after this many seconds"
    )
    parser.add_argument(
        "--lab-domains",
        type=int,
        default=0,
        help="domains the lab serves (the first in claim order; default: all of --domains)",
    )
    parser.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, default=0.0, help=argparse.SUPPRESS)
    for hidden in ("--url", "--nameserver", "--ca-file", "--trust-anchor", "--worker"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden in ("--dns-port", "--https-port", "--smtp-port"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        asyncio.run(work(args))
        return
    if not args.pg:
        parser.error("--pg URL (or $STSPILOT_BENCH_PG) names the PostgreSQL server")
    print(
        f"monitor scale-out on PostgreSQL: {args.domains} domains enrolled"
        f" ({args.lab_domains or args.domains} served by the lab), batches of {args.batch},"
        f" {args.concurrency} in flight a worker, lease {args.lease:g} s; {os.cpu_count()} CPUs;"
        f" {load()}",
        flush=True,
    )
    lab = min(args.lab_domains or args.domains, args.domains)
    world = World(lab, 1, args.latency_ms / 1000, args.dns_latency_ms / 1000)
    try:
        for n in (int(w) for w in args.workers.split(",")):
            one_round(args, world, n, kill=False)
        if args.kill:
            one_round(args, world, 2, kill=True)
    finally:
        world.close()


if __name__ == "__main__":
    main()
