"""Print TLS-RPT parsing figures: reports/s (JSON, .json.gz, e-mail), JSON library baselines,
peak RSS, and how fast and how cheaply a gzip bomb is refused.

    .venv/bin/python bench/parse_bench.py [--n 10000] [--seed 1]
    .venv/bin/python bench/parse_bench.py --instructions [--cachegrind] [--peer-python PY]

Figures, never pass/fail. CPU time (``time.process_time``) is reported next to wall time because
this machine is shared; the best of ``--repeat`` runs is printed. On a loaded machine compare
the parse rate with the json.loads line of the same run, or count instructions, which load does
not change: ``--instructions`` runs the first-pass corpus of ``bench/peers.py`` (a fresh
10,000-report corpus, with the generator's addresses and with an address of its own for every
failure detail) under ``valgrind --tool=callgrind`` for 1,000 and 3,000 reports in fresh
processes and prints the difference a report, for stspilot and, given ``--peer-python`` (a venv
with parsedmarc), for parsedmarc's ``parse_smtp_tls_report_json``. Instructions are not time:
the Python interpreter and msgspec miss the caches and branch predictors more than ``json.loads``
does, so quote both figures; ``--cachegrind`` runs valgrind's cachegrind instead (cache and
branch simulation) and prints L1 misses and mispredicted branches a report beside instructions.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from stspilot.errors import LimitExceeded
from stspilot.ingest.decode import extract_reports
from stspilot.lab.sample_reports import generate_reports, to_email, to_gzip, to_json_bytes
from stspilot.tlsrpt import reports
from stspilot.tlsrpt.reports import parse_report
from stspilot.tlsrpt.schema import REPORT_DECODER

try:
    import orjson
except ImportError:  # installed in .venv but not a declared dependency
    orjson = None


def best_rate(items: Sequence[bytes], fn: Callable[[bytes], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - started)
    return len(items) / best


def naive_parse(data: bytes) -> object:
    """What a validate-almost-nothing parser does: json.loads and pick the members."""
    doc = json.loads(data)
    out = []
    for p in doc["policies"]:
        out.append(
            (
                p["policy"]["policy-type"],
                p["policy"].get("policy-domain"),
                p["summary"]["total-successful-session-count"],
                p["summary"].get("total-failure-session-count", 0),
                [dict(d) for d in p.get("failure-details", [])],
            )
        )
    return doc["organization-name"], doc["report-id"], out


def parse_cold(data: bytes) -> object:
    """parse_report as if no policy, date range or address had been seen before."""
    reports._DATE_RANGES.clear()
    return parse_report(data)


def from_email(data: bytes) -> object:
    return [parse_report(e.json_bytes) for e in extract_reports(data)]


def from_gzip(data: bytes) -> object:
    return [parse_report(e.json_bytes) for e in extract_reports(data)]


def bomb(expanded: int) -> bytes:
    # Deflate tops out near 1032:1, so 90 MiB of zeros gzip to ~90 KB: the brief's bomb.
    return gzip.compress(b"\0" * expanded, compresslevel=9, mtime=0)


INSTRUCTIONS_CHILD = r"""
import marshal, sys
items = marshal.load(open(sys.argv[1], "rb"))[: int(sys.argv[3])]
if sys.argv[2] == "parsedmarc":
    from parsedmarc import parse_smtp_tls_report_json as parse
else:
    from stspilot.tlsrpt.reports import parse_report as parse
for item in items:
    parse(item)
"""


def callgrind_total(
    python: str, corpus: str, which: str, n: int, env: dict[str, str] | None = None
) -> int:
    """Instructions of a whole child process that parses the first ``n`` reports."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    out = subprocess.run(
        [*valgrind, python, "-c", INSTRUCTIONS_CHILD, corpus, which, str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
    ).stderr
    line = next(x for x in out.splitlines() if "Collected" in x)
    return int(line.split()[-1])


# cachegrind's events: instructions, L1 instruction and data read misses, mispredicted
# conditional and indirect branches.
CACHE_EVENTS = ("Ir", "I1mr", "D1mr", "Bcm", "Bim")


def cachegrind_totals(
    python: str, corpus: str, which: str, n: int, env: dict[str, str] | None = None
) -> dict[str, int]:
    """cachegrind's simulated totals for a whole child process that parses ``n`` reports."""
    with tempfile.NamedTemporaryFile(prefix="stspilot-cachegrind-") as out:
        subprocess.run(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=yes",
                "--branch-sim=yes",
                f"--cachegrind-out-file={out.name}",
                python,
                "-c",
                INSTRUCTIONS_CHILD,
                corpus,
                which,
                str(n),
            ],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        )
        events: list[str] = []
        for line in Path(out.name).read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                return dict(zip(events, map(int, line.split()[1:]), strict=True))
    raise RuntimeError("cachegrind wrote no summary")


def instructions(peer_python: str | None, cache: bool, base: str | None = None) -> None:
    """Instructions (or cachegrind's events) a report on the first pass (see the docstring)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peers import compile_bytecode, write_parse_corpus

    compile_bytecode()
    runs: list[tuple[str, str, str, dict[str, str]]] = [
        (sys.executable, "stspilot", "stspilot", {})
    ]
    if peer_python:
        runs.insert(0, (peer_python, "parsedmarc", "parsedmarc", {}))
    if base:  # another checkout's code with this venv: a same-venv A/B
        src = str(Path(base).resolve() / "src")
        runs.append((sys.executable, "stspilot", "--base", {"PYTHONPATH": src}))
    tool = "cachegrind" if cache else "callgrind"
    print(f"a report, first pass ({tool}, 3,000 minus 1,000 reports; load {os.getloadavg()}):")
    if cache:
        print(
            f"  {'corpus':26} {'parser':10} {'instr':>9} {'L1i miss':>9} {'L1d miss':>9} "
            f"{'cond mispr':>10} {'ind mispr':>10} {'weighted':>9}"
        )
    with tempfile.TemporaryDirectory(prefix="stspilot-parse-bench-") as tmp:
        for fresh in (False, True):
            corpus = os.path.join(tmp, f"corpus-{fresh}.marshal")
            write_parse_corpus(Path(corpus), 10_000, seed=1000, fresh_addresses=fresh)
            label = "addresses of their own" if fresh else "lab generator's addresses"
            figures = []
            for python, which, name, env in runs:
                if not cache:
                    low, high = (
                        callgrind_total(python, corpus, which, n, env) for n in (1000, 3000)
                    )
                    figures.append(f"{name} {(high - low) / 2000:,.0f}")
                    continue
                few, many = (cachegrind_totals(python, corpus, which, n, env) for n in (1000, 3000))
                per = {e: (many[e] - few[e]) / 2000 for e in CACHE_EVENTS}
                # A rough model, not a measurement: a miss ~10 instructions, a misprediction ~15.
                weighted = per["Ir"] + 10 * (per["I1mr"] + per["D1mr"])
                weighted += 15 * (per["Bcm"] + per["Bim"])
                cells = " ".join(f"{per[e]:>{10 if e[0] == 'B' else 9},.0f}" for e in CACHE_EVENTS)
                print(f"  {label:26} {name:10} {cells} {weighted:>9,.0f}")
            if figures:
                print(f"  {label}: {', '.join(figures)}")


def bytecodes() -> None:
    """Bytecodes ``parse_report`` executes a report (sys.settrace opcode events), 1,000
    reports of the address-per-failure-detail corpus after 200 warm-up ones: load-independent,
    and exact for the interpreter's share of a parse."""
    import marshal

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peers import write_parse_corpus

    with tempfile.TemporaryDirectory(prefix="stspilot-parse-bench-") as tmp:
        corpus = Path(tmp) / "corpus.marshal"
        write_parse_corpus(corpus, 1200, seed=1000, fresh_addresses=True)
        items = marshal.loads(corpus.read_bytes())
    for item in items[:200]:
        parse_report(item)
    count = 0

    def trace(frame: Any, event: str, arg: object) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        count += event == "opcode"
        return trace

    sys.settrace(trace)
    for item in items[200:]:
        parse_report(item)
    sys.settrace(None)
    print(f"bytecodes a report, first pass: {count / (len(items) - 200):,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="callgrind counts only")
    parser.add_argument(
        "--cachegrind",
        action="store_true",
        help="with --instructions: cachegrind's cache misses and mispredictions as well",
    )
    parser.add_argument("--peer-python", help="a python with parsedmarc, for --instructions")
    parser.add_argument(
        "--base", help="with --instructions: a checkout whose src/ is counted too, this venv"
    )
    parser.add_argument("--bytecodes", action="store_true", help="bytecodes a report only")
    args = parser.parse_args()
    if args.bytecodes:
        bytecodes()
        return
    if args.instructions:
        instructions(args.peer_python, args.cachegrind, args.base)
        return

    reports = generate_reports(args.n, seed=args.seed, domains=[f"d{i}.example" for i in range(50)])
    blobs = [to_json_bytes(r) for r in reports]
    gzips = [to_gzip(r) for r in reports]
    mails = [to_email(r) for r in reports[: max(1, args.n // 5)]]
    policies = [len(r["policies"]) for r in reports]
    details = sum(len(p.get("failure-details", ())) for r in reports for p in r["policies"])
    print(f"corpus: {args.n} generated reports, seed {args.seed}")
    print(
        f"  policies/report mean {statistics.mean(policies):.2f} (1..{max(policies)}), "
        f"failure details/report {details / args.n:.2f}, "
        f"JSON mean {statistics.mean(map(len, blobs)):.0f} B, "
        f"gzip mean {statistics.mean(map(len, gzips)):.0f} B, "
        f"mail mean {statistics.mean(map(len, mails)):.0f} B"
    )

    gc.collect()
    print("JSON decode only (no model, no validation), reports/s (CPU time):")
    print(f"  json.loads           {best_rate(blobs, json.loads, args.repeat):>10,.0f}")
    print(f"  msgspec untyped      {best_rate(blobs, msgspec.json.decode, args.repeat):>10,.0f}")
    print(f"  msgspec typed schema {best_rate(blobs, REPORT_DECODER.decode, args.repeat):>10,.0f}")
    if orjson is not None:
        print(f"  orjson.loads         {best_rate(blobs, orjson.loads, args.repeat):>10,.0f}")
    print(
        f"  naive json parser    {best_rate(blobs, naive_parse, args.repeat):>10,.0f}"
        "   (json.loads + pick members; the 'validates almost nothing' baseline)"
    )

    print("parse_report with full validation, reports/s (CPU time):")
    rate = best_rate(blobs, parse_report, args.repeat)
    started = time.perf_counter()
    for b in blobs:
        parse_report(b)
    wall = time.perf_counter() - started
    print(f"  from JSON bytes      {rate:>10,.0f}   (wall, one run: {len(blobs) / wall:,.0f})")
    print(
        f"  cold memos           {best_rate(blobs, parse_cold, args.repeat):>10,.0f}"
        "   (policy/date/address memos cleared before every report)"
    )
    print(f"  from .json.gz bytes  {best_rate(gzips, from_gzip, args.repeat):>10,.0f}")
    print(
        f"  from e-mails         {best_rate(mails, from_email, max(1, args.repeat // 2)):>10,.0f}"
    )

    payload = bomb(90 * 1024 * 1024)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        extract_reports(payload)
        outcome = "ACCEPTED (unexpected)"
    except LimitExceeded as exc:
        outcome = f"refused: {exc.code}"
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"gzip bomb {len(payload) / 1024:.0f} KiB -> 90 MiB: {outcome} in {elapsed * 1000:.1f} ms, "
        f"peak extra Python memory {peak / 2**20:.1f} MiB (tracemalloc)"
    )
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
