"""The report and the trace at scale, each against a floor measured in the same run.

A finished run of N nodes (N - 1 fits and a fan-in; retries after OOM and TIMEOUT,
failures) is written straight through the store's API by ``tests/fixtures/gm_runstore.py``
(seconds, where the engine takes minutes for a million nodes). Then, each in a process
of its own that reports its peak RSS:

1. ``gristmill report``: its time and file size. Targets: <= 30 s and <= 20 MB at
   1,000,000 nodes, <= 2 s at 100.
2. ``gristmill trace`` (TSV): its time and peak RSS, which must not grow with N (it
   streams).
3. The end-of-run summary (the table ``run`` prints). Target: <= 3 s at 1,000,000.

Floor: a bare ``SELECT *`` of the attempts table, every row fetched into Python.
Prints a table and writes benchmarks/results/report.json; it never fails on times.

    PYTHONPATH=src python benchmarks/bench_report.py [--nodes 100 100000 1000000]
        [--keep DIR]

``--keep DIR`` builds each run under DIR once and reuses it on later runs (a run of a
million nodes takes minutes to write), so a change can be measured before and after on
the same store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_engine import peak_rss_mb  # VmHWM of this process, as every benchmark reads it

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))

RESULTS = HERE / "results"
TARGETS = {"report_s_1m": 30.0, "report_mb_1m": 20.0, "report_s_100": 2.0, "trace_s_1m": 30.0,
           "summary_s_1m": 3.0}


def child(kind: str, run_dir: str) -> dict[str, Any]:
    path = Path(run_dir)
    start = time.perf_counter()
    out: dict[str, Any] = {}
    if kind == "report":
        from gristmill.report.html import write_report

        info = write_report(path, path / "report.html")
        out["mb"] = info.bytes / 2**20
    elif kind == "trace":
        from gristmill.report.trace import trace
        from gristmill.store.db import Store

        store = Store.open(path, readonly=True)
        with open(path / "trace.tsv", "w") as fh:
            out["rows"] = trace(store, fh)
        store.close()
    elif kind == "summary":
        from gristmill.report.summary import render_summary

        render_summary(path)
    elif kind == "select":
        conn = sqlite3.connect(f"file:{path / 'gristmill.db'}?mode=ro", uri=True)
        cursor = conn.execute("SELECT * FROM attempts")
        while cursor.fetchmany(1_000):  # the batch that reads fastest (the cache holds it)
            pass
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def in_child(kind: str, run_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(run_dir)],
                          capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(nodes: int, root: Path) -> dict[str, Any]:
    from gm_runstore import build_run

    run_dir = root / f"run-{nodes}"
    start = time.perf_counter()
    done = run_dir / "counts.json"  # written last: a run whose build was cut short is redone
    if done.is_file():
        counts = json.loads(done.read_text())
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        counts = build_run(run_dir, nodes)
        done.write_text(json.dumps(counts))
    built = time.perf_counter() - start
    row: dict[str, Any] = {"nodes": nodes, "counts": counts, "build_s": round(built, 1),
                           "store_mb": round((run_dir / "gristmill.db").stat().st_size / 2**20)}
    for kind in ("select", "trace", "summary", "report"):
        found = in_child(kind, run_dir)
        row[f"{kind}_s"] = round(found["seconds"], 2)
        row[f"{kind}_rss_mb"] = round(found["peak_rss_mb"])
        if "mb" in found:
            row["report_mb"] = round(found["mb"], 1)
    row["trace_mb"] = round((run_dir / "trace.tsv").stat().st_size / 2**20)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the runs under DIR and reuse them when already there")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = []
    with contextlib.ExitStack() as stack:
        root = args.keep if args.keep is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="gm-bench-report-")))
        root.mkdir(parents=True, exist_ok=True)
        for nodes in args.nodes:
            row = measure(nodes, root)
            rows.append(row)
            floor = row["select_s"]
            ratios = (f" (report x{row['report_s'] / floor:.1f}, trace "
                      f"x{row['trace_s'] / floor:.1f})") if floor >= 0.05 else ""
            print(f"{nodes:>9,} nodes: report {row['report_s']} s, {row['report_mb']} MB "
                  f"(peak RSS {row['report_rss_mb']} MB); trace {row['trace_s']} s "
                  f"(RSS {row['trace_rss_mb']} MB, {row['trace_mb']} MB of TSV); summary "
                  f"{row['summary_s']} s; floor, a bare SELECT: {floor} s{ratios}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps({
        "targets": TARGETS, "rows": rows, "load": os.getloadavg(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
