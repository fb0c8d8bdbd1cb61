"""Ingest benchmark: end-to-end reports/s from .json.gz files and .eml files into SQLite and
PostgreSQL, and each run's peak RSS (one fresh child process per run; its VmHWM).

    .venv/bin/python bench/ingest_bench.py                 # 1,000 and 10,000 reports
    .venv/bin/python bench/ingest_bench.py --sizes 10000 --workers 1,2
    .venv/bin/python bench/ingest_bench.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest_bench.py --grow 10 --sizes 10000 --workers 0   # a growing store
    .venv/bin/python bench/ingest_bench.py --sizes 10000 --workers 0 --verify-dkim
    .venv/bin/python bench/ingest_bench.py --ab ../base/src --sizes 10000 --repeat 3 [--pg URL]
    .venv/bin/python bench/ingest_bench.py --ab ../base/src --sizes 10000 --forms json.gz --no-pg

``--verify-dkim`` signs the .eml reports with a lab DKIM key, serves its key records from a
lab DNS server on loopback, and runs the .eml input twice: without verification ("eml") and
with it ("eml+dkim", as ``stspilot ingest --verify-dkim``), so the two rates compare the same
mails.

Columns: wall-clock reports/s; "cpu/s", reports per CPU-second of the ingesting (storing)
process alone; "all cpu s", CPU seconds of that process plus its workers (which read, parse
and build rows); the 1-minute load average at the end; the peak RSS of the storing process
and the largest of its workers'. ``--workers 0`` is the CLI's default (one per CPU). The
machine this was written on varies by +-30% between runs of the same code: use ``--repeat``.
Prints figures only; it never fails on time.

``--ab SRC`` times whole ``stspilot ingest`` processes from the shell (start-up included,
``/usr/bin/time``'s view: wall, and CPU of the process and its workers; and, in brackets, the
CPU of the storing process alone, the serial part) for another checkout's
``src`` (e.g. ``git worktree add ../base main``) and this one, in alternation (the order
flips every round), over the same files: a new SQLite store, an existing one (at the newest
schema: made by an ingest of an empty folder first), an empty folder into an existing store
(start-up alone), and a new PostgreSQL database with ``--pg``. It prints every run and the
median of the per-round CPU ratios. Both sides' bytecode is compiled first.

``--grow R`` asks whether speed and memory hold as the store grows: R rounds of ``--sizes``
new reports each go into one SQLite store, all in one ingesting process (as a long-running
receiver or a large import would), printing per round its reports/s, the store's size on disk
and the process's RSS then (VmRSS) and at its peak (VmHWM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stspilot.lab import LabDkimKey

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def write_inputs(
    root: Path, n: int, seed: int, dkim_key: LabDkimKey | None = None
) -> dict[str, tuple[Path, int]]:
    """n reports as .json.gz files and the same n as .eml files (signed with ``dkim_key``,
    and then also the form "eml+dkim": the same folder, verified); format -> (dir, count)."""
    from stspilot.lab.sample_reports import generate_reports, to_email, to_gzip

    domains = [f"customer{i}.example" for i in range(50)]
    reports = generate_reports(n, seed=seed, domains=domains)
    gz, eml = root / f"gz-{n}", root / f"eml-{n}"
    gz.mkdir()
    eml.mkdir()
    for i, report in enumerate(reports):
        # Half of the mails carry the report gzipped, half as plain JSON (both are seen).
        (gz / f"{i:06d}.json.gz").write_bytes(to_gzip(report))
        mail = to_email(report, gzip=i % 2 == 0, dkim_key=dkim_key)
        (eml / f"{i:06d}.eml").write_bytes(mail)
    distinct = len({(r["organization-name"], r["report-id"]) for r in reports})
    inputs = {"json.gz": (gz, distinct), "eml": (eml, distinct)}
    if dkim_key is not None:
        inputs["eml+dkim"] = (eml, distinct)
    return inputs


def child(db: str, folder: Path, workers: int, batch_size: int, nameserver: str | None) -> None:
    """Runs in a fresh process: open the store, ingest, print one JSON line. With a
    ``nameserver`` (HOST:PORT), DKIM signatures are verified against it."""
    from stspilot.ingest.bulk import ingest_paths
    from stspilot.store import Store

    dkim = None
    if nameserver:
        from stspilot.ingest.dkim import DkimSettings

        host, _, port = nameserver.rpartition(":")
        dkim = DkimSettings(nameserver=host, port=int(port))
    with Store.open(db) as store:
        started = time.perf_counter()
        own = resource.getrusage(resource.RUSAGE_SELF)
        tally = ingest_paths(store, [folder], workers=workers, batch_size=batch_size, dkim=dkim)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - own.ru_utime + after.ru_stime - own.ru_stime
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "new": tally.new,
                "duplicate": tally.duplicate,
                "quarantined": tally.quarantined,
                "cpu": cpu,
                "workers_cpu": kids.ru_utime + kids.ru_stime,
                "rss_kib": peak_rss_kib(),
                "workers_rss_kib": kids.ru_maxrss,
            }
        )
    )


def grow_child(db: str, folders: list[Path], workers: int, batch_size: int) -> None:
    """Runs in a fresh process: ingest each folder in turn into one store, a JSON line each."""
    from stspilot.ingest.bulk import ingest_paths
    from stspilot.store import Store

    path = Path(db.removeprefix("sqlite:///"))
    with Store.open(db) as store:
        total = 0
        for folder in folders:
            started = time.perf_counter()
            tally = ingest_paths(store, [folder], workers=workers, batch_size=batch_size)
            elapsed = time.perf_counter() - started
            total += tally.new
            disk = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
            print(
                json.dumps(
                    {
                        "elapsed": elapsed,
                        "new": tally.new,
                        "total": total,
                        "disk_mib": disk / 2**20,
                        "rss_kib": status_kib("VmRSS"),
                        "hwm_kib": status_kib("VmHWM"),
                    }
                ),
                flush=True,
            )


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    """This process's peak RSS since its exec (VmHWM). Not wait4's ru_maxrss: that survives
    exec, so a child forked from this benchmark (holding all the generated reports) would
    report the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def child_argv(
    db: str, folders: list[Path], workers: int, batch_size: int, nameserver: str | None = None
) -> list[str]:
    """This script as a fresh child process ingesting ``folders`` (several: a growing store)."""
    return [
        sys.executable, __file__, "--child", "--db", db,
        "--dir", os.pathsep.join(map(str, folders)),
        "--workers", str(workers), "--batch-size", str(batch_size),
        *(["--nameserver", nameserver] if nameserver else []),
    ]  # fmt: skip


def run_child(
    db: str, folder: Path, workers: int, batch_size: int, nameserver: str | None = None
) -> tuple[dict[str, float], int]:
    argv = child_argv(db, [folder], workers, batch_size, nameserver)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"child failed with {proc.returncode}")
    result = json.loads(out)
    return result, int(result["rss_kib"])  # the ingesting process's own peak (not its workers)


def pg_schema_url(base: str) -> str | None:
    """A fresh schema on the PostgreSQL server, or None when it is not reachable."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError:
        return None
    url = make_url(base)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError:
        return None
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def drop_pg_schema(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    schema = parsed.query["options"].split("=", 1)[1]  # type: ignore[union-attr]
    conninfo = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--workers", default="1,2", help="comma-separated, e.g. 1,2 (0: auto)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--pg", default=os.environ.get("STSPILOT_BENCH_PG", DEFAULT_PG))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgres", help="which of sqlite,postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--grow",
        type=int,
        default=0,
        metavar="R",
        help="R rounds of --sizes reports into one growing SQLite store",
    )
    parser.add_argument(
        "--verify-dkim",
        action="store_true",
        help="sign the .eml reports with a lab key and also ingest them with verification",
    )
    parser.add_argument(
        "--ab", metavar="SRC", help="whole processes: SRC (another checkout's src) vs this one"
    )
    parser.add_argument("--forms", default="json.gz,eml", help="--ab: which of json.gz,eml")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nameserver", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folders = [Path(d) for d in args.dir.split(os.pathsep)]
        if len(folders) > 1:
            grow_child(args.db, folders, int(args.workers), args.batch_size)
        else:
            child(args.db, folders[0], int(args.workers), args.batch_size, args.nameserver)
        return
    if args.grow:
        grow(args)
        return
    if args.ab:
        ab(args)
        return

    print(
        f"ingest benchmark: workers={args.workers} batch={args.batch_size} "
        f"cpus={os.cpu_count()} python={sys.version.split()[0]}"
    )
    print(
        f"{'backend':<10} {'input':<8} {'w':>2} {'reports':>8} {'new':>7} {'seconds':>8} "
        f"{'reports/s':>10} {'cpu/s':>7} {'all cpu s':>9} {'load':>5} {'peak RSS MiB':>13} "
        f"{'worker RSS':>10}"
    )
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stspilot-bench-")))
        key = nameserver = None
        if args.verify_dkim:
            from stspilot.lab import make_dkim_key
            from stspilot.lab.dkim_keys import KeyServer
            from stspilot.lab.sample_reports import REPORTER_DOMAINS

            key = make_dkim_key()
            dns = stack.enter_context(KeyServer(key.records(REPORTER_DOMAINS)))
            nameserver = dns.nameserver
            print(f"# DKIM: lab-signed .eml, keys served by the lab DNS at {nameserver}")
        for n in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            inputs = write_inputs(root, n, args.seed, key)
            print(f"# generated {n} reports x 2 forms in {time.perf_counter() - started:.1f} s")
            for backend in args.backends.split(","):
                for form, (folder, distinct) in inputs.items():
                    for workers in (int(w) for w in str(args.workers).split(",")):
                        for attempt in range(args.repeat):
                            run_one(
                                args, root, backend, form, folder, distinct, n, workers, attempt,
                                nameserver if form == "eml+dkim" else None,
                            )  # fmt: skip


# ``stspilot`` as its console script runs it, and, as it exits, the CPU of the process itself
# (the storing process: start-up, inserts, commits) apart from its workers'.
_STORING_CPU = r"""
import os, resource, sys
_pid = os.getpid()
def _say():
    if os.getpid() == _pid:  # not in a forked worker
        r = resource.getrusage(resource.RUSAGE_SELF)
        sys.stderr.write(f"\nSTORING-CPU {r.ru_utime + r.ru_stime:.4f}\n")
        sys.stderr.flush()
_real_exit = os._exit
def _exit(code):
    _say()
    _real_exit(code)
os._exit = _exit
import atexit
atexit.register(_say)
sys.argv = ["stspilot", *sys.argv[1:]]
from stspilot.cli import main
sys.exit(main())
"""


def _whole_process(src: str, argv: list[str]) -> tuple[float, float, str, float]:
    """One ``stspilot`` process with ``src`` first on its path: wall, CPU (with its workers),
    its output, and the CPU of the storing process alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _STORING_CPU, *argv],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"stspilot {' '.join(argv)} failed: {done.stderr[-1500:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    storing = [ln for ln in done.stderr.splitlines() if ln.startswith("STORING-CPU ")]
    own = float(storing[-1].split()[1]) if storing else float("nan")
    return took, cpu, done.stdout.strip(), own


def ab(args: argparse.Namespace) -> None:
    import compileall
    import statistics

    sides = {"base": str(Path(args.ab).resolve()), "this": str(Path(__file__).parents[1] / "src")}
    for src in sides.values():
        compileall.compile_dir(src, quiet=1)
    n = int(args.sizes.split(",")[0])
    cases = ["new", "existing", "start-up"] + (["postgresql"] if args.pg and not args.no_pg else [])
    print(f"whole-process A/B: {sides['base']} (base) vs {sides['this']} (this), {n} files")
    results: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="stspilot-bench-") as tmp:
        root = Path(tmp)
        inputs = write_inputs(root, n, args.seed)
        empty = root / "empty"
        empty.mkdir()
        for attempt in range(args.repeat):
            order = ["base", "this"] if attempt % 2 == 0 else ["this", "base"]
            for form, (folder, _distinct) in inputs.items():
                if form not in args.forms.split(","):
                    continue
                for case in cases:
                    if case == "start-up" and form != "json.gz":
                        continue
                    for side in order:
                        db = str(root / f"{side}.sqlite3")
                        if case == "postgresql":
                            db = pg_schema_url(args.pg) or ""
                        if case in ("existing", "start-up"):
                            _whole_process(sides[side], ["ingest", "--db", db, str(empty)])
                        source = empty if case == "start-up" else folder
                        took, cpu, out, own = _whole_process(
                            sides[side], ["ingest", "--db", db, str(source)]
                        )
                        results.setdefault((form, case, side), []).append((took, cpu, own))
                        print(
                            f"{attempt} {form:<8} {case:<10} {side:<4} wall {took:6.2f} s "
                            f"cpu {cpu:5.2f} s (storing {own:4.2f} s)  "
                            f"load {os.getloadavg()[0]:4.1f}  {out}",
                            flush=True,
                        )
                        if case == "postgresql":
                            drop_pg_schema(db)
                            continue
                        for extra in ("", "-wal", "-shm"):
                            Path(db + extra).unlink(missing_ok=True)
    print(
        "\nmedian CPU s (wall s) [storing process CPU s], base -> this; "
        "per-round CPU ratios base/this"
    )
    for (form, case, side), runs in results.items():
        if side != "base":
            continue
        base, this = runs, results[(form, case, "this")]
        ratios = sorted(b[1] / t[1] for b, t in zip(base, this, strict=True))
        print(
            f"{form:<8} {case:<10} {statistics.median(r[1] for r in base):.2f} "
            f"({statistics.median(r[0] for r in base):.2f}) "
            f"[{statistics.median(r[2] for r in base):.2f}] -> "
            f"{statistics.median(r[1] for r in this):.2f} "
            f"({statistics.median(r[0] for r in this):.2f}) "
            f"[{statistics.median(r[2] for r in this):.2f}]; "
            f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})"
        )


def grow(args: argparse.Namespace) -> None:
    n, rounds = int(args.sizes.split(",")[0]), args.grow
    print(
        f"growing-store benchmark: {rounds} rounds of {n} reports, workers={args.workers} "
        f"batch={args.batch_size} cpus={os.cpu_count()} python={sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="stspilot-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        # One generation, cut into rounds: every round's reports are new to the store.
        from stspilot.lab.sample_reports import generate_reports, to_email, to_gzip

        domains = [f"customer{i}.example" for i in range(50)]
        reports = generate_reports(n * rounds, seed=args.seed, domains=domains)
        forms = {
            "json.gz": lambda r, i: to_gzip(r),
            "eml": lambda r, i: to_email(r, gzip=i % 2 == 0),
        }
        dirs: dict[str, list[Path]] = {form: [] for form in forms}
        for form, encode in forms.items():
            for k in range(rounds):
                folder = root / f"{form}-round{k:03d}"
                folder.mkdir()
                for i in range(k * n, (k + 1) * n):
                    (folder / f"{i:07d}.{form}").write_bytes(encode(reports[i], i))
                dirs[form].append(folder)
        del reports
        took = time.perf_counter() - started
        print(f"# generated {n * rounds} reports x 2 forms in {took:.1f} s")
        print(
            f"{'input':<8} {'w':>2} {'round':>5} {'stored':>8} {'reports/s':>10} "
            f"{'disk MiB':>9} {'RSS MiB':>8} {'peak MiB':>9} {'load':>5}"
        )
        for form, folders in dirs.items():
            for workers in (int(w) for w in str(args.workers).split(",")):
                db = f"sqlite:///{root / f'grow-{form}-{workers}.sqlite3'}"
                argv = child_argv(db, folders, workers, args.batch_size)
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                assert proc.stdout is not None
                for k, line in enumerate(proc.stdout):
                    r = json.loads(line)
                    check = "" if r["new"] == n else f"  (expected {n} new!)"
                    print(
                        f"{form:<8} {workers:>2} {k + 1:>5} {r['total']:>8} "
                        f"{r['new'] / r['elapsed']:>10.0f} {r['disk_mib']:>9.0f} "
                        f"{r['rss_kib'] / 1024:>8.1f} {r['hwm_kib'] / 1024:>9.1f} "
                        f"{os.getloadavg()[0]:>5.1f}{check}",
                        flush=True,
                    )
                if proc.wait() != 0:
                    raise RuntimeError(f"child failed with {proc.returncode}")


def run_one(
    args: argparse.Namespace,
    root: Path,
    backend: str,
    form: str,
    folder: Path,
    distinct: int,
    n: int,
    workers: int,
    attempt: int,
    nameserver: str | None = None,
) -> None:
    if backend == "sqlite":
        db: str | None = f"sqlite:///{root / f'{form}-{n}-{workers}-{attempt}.sqlite3'}"
    else:
        db = None if args.no_pg else pg_schema_url(args.pg)
        if db is None:
            why = "--no-pg" if args.no_pg else "PostgreSQL not reachable"
            print(f"{backend:<10} {form:<8} (skipped: {why})")
            return
    try:
        result, rss_kib = run_child(db, folder, workers, args.batch_size, nameserver)
    finally:
        if backend == "postgres":
            drop_pg_schema(db)
    rate = n / result["elapsed"]
    check = "" if result["new"] == distinct else f"  (expected {distinct} new!)"
    print(
        f"{backend:<10} {form:<8} {workers:>2} {n:>8} {int(result['new']):>7} "
        f"{result['elapsed']:>8.2f} {rate:>10.0f} {n / result['cpu']:>7.0f} "
        f"{result['cpu'] + result['workers_cpu']:>9.2f} {os.getloadavg()[0]:>5.1f} "
        f"{rss_kib / 1024:>13.1f} {result['workers_rss_kib'] / 1024:>10.1f}{check}"
    )


if __name__ == "__main__":
    main()
