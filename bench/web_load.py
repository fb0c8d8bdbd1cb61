"""Load benchmark of ``stspilot serve``: policy GETs and report POSTs driven by wrk from a second
process on loopback, with Debian's nginx serving the same policy from a static file as the
yardstick in the same run (issue 5: policy GETs >= half of nginx's rate; report POSTs >= 500/s
with zero loss, proved by counting stored rows after the run).

    .venv/bin/python bench/web_load.py                         # 10 s per run, workers 1,2,4
    .venv/bin/python bench/web_load.py --duration 20 --workers 1,2,3 --posts 20000
    .venv/bin/python bench/web_load.py --skip-post             # policy GETs only
    .venv/bin/python bench/web_load.py --servers uvicorn

The app is the factory ``stspilot serve`` runs (``stspilot.web.app:app_from_env``) under uvicorn
and, when it is installed in the venv, granian.
Everything shares one machine: wrk (2 threads) competes with the server for the cores, equally
for nginx and for the app. Prints figures only; it never fails on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOSTED = "bench.test"
POLICY_HOST = f"mta-sts.{HOSTED}"
POLICY_PATH = "/.well-known/mta-sts.txt"
REPORT_PATH = "/tlsrpt"
REPORT_HOST = (
    "reports.stspilot.test"  # the app's own name (rua=https://reports.stspilot.test/tlsrpt)
)
MX = ("mx1.bench.test", "mx2.bench.test", "*.backup.bench.test")
START_TIMEOUT = 30.0

# wrk's done() hook prints one JSON line: totals and latency percentiles (microseconds).
SUMMARY_LUA = r"""
function summary_json(summary, latency, extra)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d%s}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, extra or ""))
end
"""

GET_LUA = (
    SUMMARY_LUA
    + r"""
function done(summary, latency, requests)
  summary_json(summary, latency, nil)
end
"""
)

# Each wrk thread posts its own share of the pre-generated gzip reports (unique report ids), in
# order, then stops itself once every one of them has an answer. When a thread runs out before
# its last answers are in, its idle connections repeat the last body (answered 200, stores
# nothing) rather than invent new reports.
POST_LUA = (
    SUMMARY_LUA
    + r"""
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local queue = {}
local pos = 0
acked, dup, other = 0, 0, 0
function init(args)
  local blob = io.open(args[1], "rb"):read("*a")
  local nthreads = tonumber(args[3])
  local headers = {["Host"] = args[4], ["Content-Type"] = "application/tlsrpt+gzip"}
  local i = 0
  for line in io.lines(args[2]) do
    local offset, length = line:match("(%d+) (%d+)")
    if i % nthreads == tid then
      local body = blob:sub(tonumber(offset) + 1, tonumber(offset) + tonumber(length))
      table.insert(queue, wrk.format("POST", args[5], headers, body))
    end
    i = i + 1
  end
  total = #queue
end

local verified = false
function request()
  -- wrk calls request() once in thread 0 to check for pipelining before any connection exists
  -- (wrk.c main: script_verify_request): that call must not use up a report.
  if tid == 0 and not verified then
    verified = true
    return queue[1]
  end
  pos = pos + 1
  if pos > #queue then return queue[#queue] end
  return queue[pos]
end

function response(status, headers, body)
  if status == 201 then acked = acked + 1
  elseif status == 200 then dup = dup + 1
  else other = other + 1 end
  if acked + other >= #queue then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local a, d, o, t = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("acked"); d = d + thread:get("dup")
    o = o + thread:get("other"); t = t + thread:get("total")
  end
  summary_json(summary, latency, string.format(
    ',"acked":%d,"duplicates":%d,"other_status":%d,"bodies":%d', a, d, o, t))
end
"""
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


# --- processes ----------------------------------------------------------------------------------


class Server:
    """A server process group (nginx master and workers, uvicorn and its workers)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.port, self.log = name, port, log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not tcp_open(port):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The process group's members (the server started a session of its own)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == self.popen.pid:  # pgrp
                    found.append(int(entry.name))
        return found

    def peak_rss_mib(self) -> float:
        """The sum of every member's peak RSS (VmHWM): an upper bound of the group's peak."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._out.close()


DEBIAN_TOOLS = {"nginx": "nginx-light", "wrk": "wrk"}  # command -> the Debian package with it


def ensure_tools() -> None:
    """nginx and wrk, from Debian's packages when missing (as root; the bench needs them, the
    test suite does not, so ``scripts/setup.sh`` leaves them out); exits saying which when it
    cannot."""
    missing = [pkg for tool, pkg in DEBIAN_TOOLS.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0:
        print(f"installing Debian packages: {' '.join(missing)}", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(apt, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(apt, env=env, capture_output=True)
    still = [tool for tool in DEBIAN_TOOLS if shutil.which(tool) is None]
    if still:
        sys.exit(f"{' and '.join(still)} not installed (Debian packages: nginx-light wrk)")


def start_nginx(root: Path, policy_file: Path, workers: int, tag: str) -> Server:
    prefix = root / f"nginx{tag.strip('#')}"
    prefix.mkdir()
    port = free_port()
    # As root nginx would switch its workers to an unprivileged user: let that user read.
    user_line = "user nobody nogroup;" if os.geteuid() == 0 else ""
    for path in (root, prefix, policy_file.parent):
        path.chmod(0o755)
    policy_file.chmod(0o644)
    template = string.Template((HERE / "nginx.conf.template").read_text())
    conf = prefix / "nginx.conf"
    conf.write_text(
        template.substitute(
            user_line=user_line,
            workers=workers,
            prefix=prefix,
            port=port,
            host=POLICY_HOST,
            policy_file=policy_file,
        )
    )
    return Server(
        "nginx", ["nginx", "-p", str(prefix), "-c", str(conf)], port=port, log=prefix / "nginx.log"
    )


def start_app(root: Path, db: str, workers: int, tag: str, *, server: str = "uvicorn") -> Server:
    """The factory ``stspilot serve`` runs (``stspilot.web.app:app_from_env``) under uvicorn or
    granian with ``workers`` processes. The per-client report rate limit is lifted: one client
    (wrk) sends everything here, where in production each sender is its own client."""
    port = free_port()
    factory = "stspilot.web.app:app_from_env"
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if server == "granian":
        argv = [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "asgi",
            "--factory",
            *common,
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
            factory,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            *common,
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ]
    env = {
        "STSPILOT_DATABASE_URL": db,
        "STSPILOT_SECRET_KEY": "web-load-bench-secret-key-0123456789",
        "STSPILOT_REPORT_RATE": "1000000",
        "STSPILOT_INTAKE_DOMAIN_BYTES": str(1 << 40),  # measure the intake, not its budgets
        "STSPILOT_INTAKE_TENANT_BYTES": str(1 << 40),
        "STSPILOT_REPORT_BURST": "1000000",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    name = f"{server}({workers}w)"
    return Server(name, argv, port=port, log=root / f"app-{tag}.log", env=env)


# --- the app under test ---------------------------------------------------------------------------


def prepare_store(db: str) -> str:
    """A fresh database hosting ``bench.test`` (as ``stspilot host add`` does), migrated here
    once rather than racing in every worker; returns the policy text the app serves."""
    from datetime import UTC, datetime

    from stspilot.store import Store
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies
    from stspilot.store.monitor import MonitorStore

    now = datetime.now(UTC)
    with Store.open(db) as store:
        tenant = Accounts(store).add_tenant("bench", now=now)
        hosted = HostedPolicies(store).add(
            HOSTED, tenant_id=tenant.id, mode="enforce", mx=MX, now=now, max_age=604800
        )
        # The intake stores reports only for hosted or monitored domains (issue 15).
        MonitorStore(store).add(["other.bench.test"], now=now)
    return hosted.policy_text


def count_rows(db: str) -> tuple[int, int, float]:
    """(stored reports, quarantined items, seconds between the first and last commit)."""
    from sqlalchemy import func, select

    from stspilot.store import Store
    from stspilot.store.schema import quarantine, reports

    with Store.open(db, migrate=False) as store, store.engine.connect() as conn:
        n, first, last = conn.execute(
            select(func.count(), func.min(reports.c.received_at), func.max(reports.c.received_at))
        ).one()
        held = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
    span = (last - first).total_seconds() if n else 0.0
    return int(n), int(held), span


# --- wrk ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    extra: str = ""


def parse_wrk(output: str) -> dict[str, float]:
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            return dict(json.loads(line[len("WRKJSON ") :]))
    raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")


def wrk_get(
    server: Server, args: argparse.Namespace, script: Path, scheme: str = "http"
) -> Figures:
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--timeout",
            "10s",
            "-H",
            f"Host: {POLICY_HOST}",
            "-s",
            str(script),
            f"{scheme}://127.0.0.1:{server.port}{POLICY_PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=args.duration + 60,
        check=True,
    ).stdout
    w = parse_wrk(out)
    errors = int(
        sum(
            w[k]
            for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        )
    )
    return Figures(
        server.name,
        w["requests"] / (w["duration_us"] / 1e6),
        w["p50_us"] / 1000,
        w["p99_us"] / 1000,
        errors,
        server.peak_rss_mib(),
    )


def check_policy(server: Server, expected: str) -> None:
    """One GET before the load: the right body under the right Host, so we time real answers."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while True:  # granian binds its port before the Python worker has imported the app
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{server.port}{POLICY_PATH}",
                headers={"Host": POLICY_HOST},
                timeout=10,
            )
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    if answer.status_code != 200 or answer.text != expected:
        raise RuntimeError(f"{server.name} answered {answer.status_code}: {answer.text[:200]!r}")
    if not answer.headers.get("content-type", "").startswith("text/plain"):
        raise RuntimeError(f"{server.name} content type {answer.headers.get('content-type')}")


def write_bodies(root: Path, n: int) -> tuple[Path, Path]:
    """n generated gzip reports with unique report ids, as one blob and an offset index."""
    from stspilot.lab.sample_reports import generate_reports, to_gzip

    reports = generate_reports(n, seed=5, domains=[HOSTED, "other.bench.test"])
    assert len({(r["organization-name"], r["report-id"]) for r in reports}) == n
    blob, index = root / "bodies.bin", root / "bodies.idx"
    offset = 0
    with blob.open("wb") as data, index.open("w") as idx:
        for report in reports:
            body = to_gzip(report)
            data.write(body)
            idx.write(f"{offset} {len(body)}\n")
            offset += len(body)
    return blob, index


def wrk_post(
    server: Server,
    db: str,
    args: argparse.Namespace,
    script: Path,
    bodies: tuple[Path, Path],
    path: str = REPORT_PATH,
) -> Figures:
    """POST every body once; stop wrk when every report is stored (or nothing moves for 10 s)."""
    n = args.posts
    cap = max(30, int(n / 100) + 30)  # wrk's own duration is only a ceiling
    wrk = subprocess.Popen(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.post_connections}",
            f"-d{cap}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{server.port}{path}",
            "--",
            str(bodies[0]),
            str(bodies[1]),
            str(args.threads),
            REPORT_HOST,
            path,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = time.perf_counter()
    last, last_change = -1, time.monotonic()
    while wrk.poll() is None:
        time.sleep(0.1)
        stored, _, _ = count_rows(db)
        if stored != last:
            last, last_change = stored, time.monotonic()
        if stored >= n or time.monotonic() - last_change > 10:
            break
    wall = time.perf_counter() - started
    time.sleep(0.3)  # the last answers reach wrk
    with contextlib.suppress(ProcessLookupError):
        wrk.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
    out, _ = wrk.communicate(timeout=30)
    w = parse_wrk(out)
    stored, held, span = count_rows(db)
    errors = int(w["other_status"] + w["connect_errors"] + w["read_errors"] + w["timeouts"])
    lost = int(w["acked"]) - stored  # acknowledged (201) but not in the database
    extra = (
        f"sent {n}, acked {int(w['acked'])}, stored {stored}, quarantined {held}, "
        f"lost {max(lost, 0)}{' (!)' if lost > 0 or stored != n else ''}; "
        f"commit span {span:.2f} s, wall {wall:.2f} s"
    )
    rate = stored / span if span > 0 else 0.0
    return Figures(
        server.name,
        rate,
        w["p50_us"] / 1000,
        w["p99_us"] / 1000,
        errors,
        server.peak_rss_mib(),
        extra,
    )


# --- main -----------------------------------------------------------------------------------------


def table(title: str, rows: list[Figures], yardstick: float | None) -> None:
    print(f"\n{title}")
    print(
        f"  {'server':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'peak RSS':>9} {'vs nginx':>9}"
    )
    for f in rows:
        ratio = f"{f.rps / yardstick:8.2f}x" if yardstick else ""
        print(
            f"  {f.name:<20} {f.rps:9.0f} {f.p50_ms:8.2f} {f.p99_ms:8.2f} {f.errors:7d} "
            f"{f.rss_mib:7.0f}MB {ratio:>9}"
        )
        if f.extra:
            print(f"  {'':<20} {f.extra}")


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per GET run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (GET)")
    parser.add_argument("--post-connections", type=int, default=16)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to try")
    parser.add_argument(
        "--servers",
        default="uvicorn,granian"
        if shutil.which("granian", path=str(Path(sys.executable).parent))
        else "uvicorn",
        help="ASGI servers to try (granian when installed in the venv)",
    )
    parser.add_argument("--nginx-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--posts", type=int, default=10000, help="distinct reports to POST")
    parser.add_argument("--skip-post", action="store_true")
    args = parser.parse_args()
    ensure_tools()
    workers = [int(w) for w in args.workers.split(",")]
    servers = args.servers.split(",")

    with tempfile.TemporaryDirectory(prefix="stspilot-web-load-") as tmp:
        root = Path(tmp)
        get_lua, post_lua = root / "get.lua", root / "post.lua"
        get_lua.write_text(GET_LUA)
        post_lua.write_text(POST_LUA)
        db = f"sqlite:///{root / 'get.sqlite3'}"
        policy = prepare_store(db)
        # nginx serves the very bytes the app serves, from a static file.
        policy_file = root / "www" / "mta-sts.txt"
        policy_file.parent.mkdir()
        policy_file.write_bytes(policy.encode())
        print(
            f"cores: {os.cpu_count()}; wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration}s on the same machine; policy {len(policy)} bytes; "
            f"load average before: {os.getloadavg()[0]:.2f}"
        )

        def yardstick(when: str) -> Figures:
            with running(start_nginx(root, policy_file, args.nginx_workers, when)) as nginx:
                check_policy(nginx, policy)
                figures = wrk_get(nginx, args, get_lua)
            figures.name = f"nginx({args.nginx_workers}w){when}"
            return figures

        # nginx before and after the app runs: the machine is shared, its load drifts.
        rows = [yardstick("#1")]
        for server in servers:
            for count in workers:
                tag = f"get-{server}-{count}"
                with running(start_app(root, db, count, tag, server=server)) as app:
                    check_policy(app, policy)
                    rows.append(wrk_get(app, args, get_lua))
        rows.append(yardstick("#2"))
        nginx_rps = (rows[0].rps + rows[-1].rps) / 2
        table(
            "policy GET (keep-alive, Host: mta-sts.bench.test; vs the mean of both nginx runs)",
            rows,
            nginx_rps,
        )

        if args.skip_post:
            return
        bodies = write_bodies(root, args.posts)
        posts: list[Figures] = []
        for server in servers:
            for count in workers:
                tag = f"post-{server}-{count}"
                db = f"sqlite:///{root / f'{tag}.sqlite3'}"
                prepare_store(db)
                with running(start_app(root, db, count, tag, server=server)) as app:
                    check_policy(app, policy)
                    posts.append(wrk_post(app, db, args, post_lua, bodies, REPORT_PATH))
        table(
            f"report POST ({args.posts} distinct gzip reports, -c{args.post_connections}; "
            "req/s = stored rows / commit span)",
            posts,
            None,
        )


if __name__ == "__main__":
    main()
