"""Peers side by side: gristmill, Snakemake, Dask and Parsl on the same workloads.

1. DAG construction, against ``graphlib.TopologicalSorter`` + ``static_order`` over a
   dict of the same shape: ``fan`` (N independent nodes + one fan-in), ``tree`` (N
   individually added nodes, node i after node (i - 1) // 2, one edge each) and
   ``chain`` (each node after the previous one; gristmill and the floor only).
   gristmill records with ``@gm.workflow`` and resolves (``len(wf)``, every identity);
   Snakemake dry-runs (``snakemake -n``); Dask builds ``dask.delayed`` objects (and, for
   the fan, a low-level graph dict), materialises the graph and orders it as compute does.
2. Per-task overhead: 2,000 ``true`` processes, 2 at a time, against
   ``seq 2000 | xargs -P2 -I{} true``; each tool's whole run (startup and teardown
   included) is compared with the floors measured between its own repeats.

Every measurement runs in a process of its own (peak RSS: that process's VmHWM, or
``os.wait4``'s for Snakemake's CLI, which is bigger than this script); times are
the min of a few repeats. A size whose time, extrapolated from the smaller sizes, passes
its cap is skipped with a note. Run it with ``nox -s bench_peers`` (it installs the
peers); without any peer installed (``nox -s bench``) it says so and exits. Writes
benchmarks/results/peers.json; never fails on times.

    python benchmarks/bench_peers.py [--quick] [--tools gristmill,snakemake,...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
from snakefiles import SNAKEFILES  # noqa: E402  (a helper beside this script)

ROOT = HERE.parent
WORKLOADS = HERE / "peers" / "workloads.py"
RESULTS = HERE / "results"
PEERS = ("snakemake", "dask", "distributed", "parsl")
DAG_TOOLS = {  # shape -> tools measured on it, the floor first
    "fan": ["graphlib", "gristmill", "snakemake", "dask-delayed", "dask-graph"],
    "tree": ["graphlib", "gristmill", "snakemake", "dask-delayed"],
    "chain": ["graphlib", "gristmill"],
}
DAG_SIZES = {"fan": [3_000, 10_000, 100_000, 1_000_000], "tree": [3_000, 10_000, 100_000],
             "chain": [100_000]}
TASK_TOOLS = ["gristmill", "snakemake", "snakemake-greedy", "dask", "parsl-threads",
              "parsl-htex"]
NEEDS = {"snakemake": "snakemake", "snakemake-greedy": "snakemake", "dask-delayed": "dask",
         "dask-graph": "dask", "dask": "distributed", "parsl-threads": "parsl",
         "parsl-htex": "parsl"}
NOTES = [
    "Parsl has no lazy mode: calling an app submits it, so it has no DAG-construction row.",
    "Snakemake builds its DAG recursively: a chain deeper than ~500 jobs stops with "
    "RecursionError, so the individual-calls shape every tool runs is the tree "
    "(depth log2 N); the chain row is gristmill's own target shape (bench_record.py).",
    "dask.delayed keeps one graph layer per call: a fan-in over a list of N Delayed culls "
    "every layer against all N keys, O(N^2), and a chain grows about as fast (1,000 nodes "
    "0.29 s, 3,000 1.9 s); dask-graph is the low-level dict that avoids it.",
    "Snakemake's rows are whole CLI processes (interpreter start and imports included); "
    "the others' exclude imports.",
]


def caps(quick: bool) -> dict[int, float]:
    """Largest extrapolated seconds allowed at a size: the whole run stays near 15 minutes."""
    return {} if quick else {100_000: 300.0, 1_000_000: 60.0}


def child_env() -> dict[str, str]:
    """This interpreter's scripts first on PATH (Parsl's HTEX needs them); the tree's src."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(HERE / "peers"), env.get("PYTHONPATH")) if p)
    return env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_process(argv: list[str], timeout: float, cwd: Path | None = None
                ) -> tuple[int | None, float, float, str, str]:
    """Run argv to the end: (exit code or None on timeout, wall s, peak RSS MiB, out, err)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=child_env(),
                                start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone
        wall = time.perf_counter() - start
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        code = None if timed_out else proc.returncode
        return (code, wall, usage.ru_maxrss / 1024, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def _failed(code: int | None, wall: float, err: str) -> dict[str, Any]:
    if code is None:
        return {"status": "timeout", "note": f"killed after {wall:.0f} s", "seconds": wall}
    return {"status": "failed", "note": f"exit {code}: {err.strip()[-300:]}", "seconds": wall}


def snakemake(shape: str, n: int, extra: list[str], repeat: int, budget: float,
              timeout: float) -> dict[str, Any]:
    """Snakemake's CLI in a fresh folder per run: a dry run for DAG shapes, a real run for
    ``tasks``."""
    seconds: list[float] = []
    peak = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="gm-peers-smk-") as tmp:
            (Path(tmp) / "Snakefile").write_text(SNAKEFILES[shape])
            argv = [sys.executable, "-m", "snakemake", "all", *extra, "--quiet", "all",
                    "--config", f"size={n}"]
            code, wall, rss, _, err = run_process(argv, timeout, cwd=Path(tmp))
        if code != 0:
            return _failed(code, wall, err)
        seconds.append(wall)
        peak = max(peak, rss)
        if sum(seconds) + wall > budget:
            break
    return {"status": "ok", "seconds": min(seconds), "all_seconds": seconds,
            "peak_rss_mb": round(peak, 1), "nodes": n}


def in_child(workload: str, tool: str, n: int, repeat: int, budget: float,
             timeout: float) -> dict[str, Any]:
    """One workloads.py process: its JSON line (with its own peak RSS, which wait4's
    ru_maxrss would floor at this process's size when it forked)."""
    argv = [sys.executable, str(WORKLOADS), workload, tool, str(n), "--repeat", str(repeat),
            "--budget", str(budget)]
    code, wall, rss, out, err = run_process(argv, timeout)
    if code != 0:
        return _failed(code, wall, err)
    data = json.loads(out.strip().splitlines()[-1])
    return {"status": "ok", "seconds": min(data["seconds"]), "all_seconds": data["seconds"],
            "startup_s": min(data["startup_s"]), "peak_rss_mb": data.get("peak_rss_mb", rss),
            "baseline_rss_mb": data["baseline_rss_mb"], "nodes": data["nodes"]}


def extrapolate(points: list[tuple[int, float]], n: int) -> float | None:
    """Seconds at n from the last two sizes; None without a point.

    The log-log slope is rounded up to a whole power (with 0.25 of slack): at small sizes
    fixed costs hide a quadratic term (dask.delayed's fan-in measures 1.6 from 3,000 to
    10,000 nodes and is 2 beyond), and a row that overruns costs its whole timeout.
    """
    if not points:
        return None
    n1, t1 = points[-1]
    slope = 1.0
    if len(points) > 1 and points[-2][1] > 0 and n1 > points[-2][0]:
        n0, t0 = points[-2]
        slope = max(1.0, math.ceil(math.log(t1 / t0) / math.log(n1 / n0) - 0.25))
    return t1 * float((n / n1) ** slope)


def measure(workload: str, tool: str, n: int, repeat: int, budget: float,
            timeout: float) -> dict[str, Any]:
    """One row: Snakemake's CLI, or a workloads.py process for every other tool."""
    if not tool.startswith("snakemake"):
        return in_child(workload, tool, n, repeat, budget, timeout)
    if workload != "tasks":
        return snakemake(workload, n, ["-n", "--cores", "1"], repeat, budget, timeout)
    greedy = ["--scheduler", "greedy"] if tool == "snakemake-greedy" else []
    return snakemake(workload, n, ["--cores", "2", *greedy], repeat, budget, timeout)


def dag_section(tools: set[str], quick: bool, repeat: int, log: Any) -> list[dict[str, Any]]:
    """Shape by shape, size by size: the floor, then each tool right after it."""
    rows: list[dict[str, Any]] = []
    limit = caps(quick)
    for shape, shape_tools in DAG_TOOLS.items():
        sizes = DAG_SIZES[shape]
        if quick:
            sizes = sorted({max(100, n // 100) for n in sizes})
        points: dict[str, list[tuple[int, float]]] = {t: [] for t in shape_tools}
        for n in sizes:
            floor: dict[str, Any] | None = None
            for tool in (t for t in shape_tools if t in tools):
                row: dict[str, Any] = {"shape": shape, "n": n, "tool": tool}
                guess, cap = extrapolate(points[tool], n), limit.get(n)
                if cap is not None and guess is not None and guess > cap:
                    row.update(status="skipped", note=f"extrapolated {guess:.0f} s > {cap:.0f} s")
                else:
                    row.update(measure(shape, tool, n, repeat, 20.0, cap + 60 if cap else 900))
                if row["status"] == "ok":
                    points[tool].append((n, row["seconds"]))
                    if tool == "graphlib":
                        floor = row
                    if floor is not None:
                        row["ratio"] = round(row["seconds"] / floor["seconds"], 2)
                rows.append(row)
                log(f"dag {shape:5} {n:>9,} {tool:12} {_cell(row)}")
    return rows


def xargs_floor(n: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


def task_row(tool: str, n: int, repeat: int, budget: float) -> dict[str, Any]:
    """Repeats of one tool, each right after an xargs floor (and one floor at the end)."""
    runs: list[dict[str, Any]] = []
    floors: list[float] = []
    for _ in range(repeat):
        floors.append(xargs_floor(n))
        run = measure("tasks", tool, n, 1, math.inf, 600.0)
        if run["status"] != "ok":
            return {"tool": tool, "n": n, **run}
        runs.append(run)
        spent = sum(r["seconds"] for r in runs)
        if spent + run["seconds"] > budget:
            break
    floors.append(xargs_floor(n))
    best = min(runs, key=lambda r: float(r["seconds"]))
    floor = min(floors)
    row = {"tool": tool, "n": n, **best, "all_seconds": [r["seconds"] for r in runs],
           "floor_s": round(floor, 3), "floors_s": [round(f, 3) for f in floors],
           "ms_per_task_above_floor": round((best["seconds"] - floor) / n * 1e3, 3),
           "ratio": round(best["seconds"] / floor, 2)}
    if best.get("startup_s"):
        row["ms_per_task_without_startup"] = round(
            (best["seconds"] - best["startup_s"] - floor) / n * 1e3, 3)
    return row


def task_section(tools: set[str], n: int, repeat: int, log: Any) -> dict[str, Any]:
    """Each tool against the xargs floors measured between its own repeats: the box drifts."""
    rows = []
    for tool in (t for t in TASK_TOOLS if t in tools):
        rows.append(task_row(tool, n, repeat, 60.0))
        log(f"tasks {tool:16} {_cell(rows[-1])}")
    floors = [f for r in rows for f in r.get("floors_s", [])]
    return {"n": n, "floor_s": min(floors, default=math.nan), "rows": rows}


def _cell(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('note', '')}"
    ratio = f" (x{row['ratio']:g})" if "ratio" in row else ""
    rss = f", {row['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row else ""
    return f"{row['seconds']:.3f} s{ratio}{rss}"


def dag_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (shape, N), one column per tool: seconds (x floor), peak RSS."""
    tools = [t for t in DAG_TOOLS["fan"] if any(r["tool"] == t for r in rows)]
    lines = ["| shape | N | " + " | ".join(tools) + " |", "|---|---:|" + "---|" * len(tools)]
    for shape in DAG_SIZES:
        for n in sorted({r["n"] for r in rows if r["shape"] == shape}):
            cells = []
            for tool in tools:
                row = next((r for r in rows if (r["shape"], r["n"], r["tool"]) ==
                            (shape, n, tool)), None)
                cells.append("n/a" if row is None else _cell(row).replace("|", "/"))
            lines.append(f"| {shape} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_table(tasks: dict[str, Any]) -> str:
    lines = [f"| tool ({tasks['n']:,} `true` tasks, 2 at a time) | wall s | its xargs floor s "
             "| x floor | ms/task above floor | startup s | ms/task above floor, startup "
             "excluded |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in tasks["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['tool']} | {row['status']}: {row.get('note', '')} "
                         "| | | | | |")
            continue
        startup, without = "", ""
        if row.get("startup_s"):
            startup = f"{row['startup_s']:.2f}"
            without = f"{row['ms_per_task_without_startup']:.2f}"
        lines.append(f"| {row['tool']} | {row['seconds']:.3f} | {row['floor_s']:.3f} "
                     f"| {row['ratio']:g} | {row['ms_per_task_above_floor']:.2f} | {startup} "
                     f"| {without} |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("gristmill", *PEERS):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="sizes / 100 and 200 tasks: checks that every row runs")
    parser.add_argument("--tools", help="comma-separated subset of the tools")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per task-overhead row")
    parser.add_argument("--dag-repeat", type=int, default=5,
                        help="runs per DAG row (fewer once a row has spent 20 s)")
    parser.add_argument("--output", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args()
    if not any(importlib.util.find_spec(p) for p in PEERS):
        sys.stdout.write("bench_peers: no peer installed; run it with `nox -s bench_peers`\n")
        return
    everything = {"graphlib", "gristmill", *NEEDS}
    tools = set(args.tools.split(",")) if args.tools else everything
    missing = {t for t in tools if t in NEEDS and not importlib.util.find_spec(NEEDS[t])}
    tools -= missing

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    started, load_before = time.perf_counter(), os.getloadavg()
    dag = dag_section(tools, args.quick, args.dag_repeat, log)
    tasks = task_section(tools, 200 if args.quick else args.tasks, args.repeat, log)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": {"before": [round(x, 2) for x in load_before],  # the box is shared
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions(),
        "quick": args.quick,
        "dag": dag,
        "tasks": tasks,
        "notes": NOTES + [f"{t}: not installed" for t in sorted(missing)],
        "total_s": round(time.perf_counter() - started, 1),
    }
    log("\n" + dag_table(dag) + "\n\n" + task_table(tasks) + "\n")
    log("\n".join(f"- {note}" for note in results["notes"]))
    log(f"versions: {results['versions']}; load average before/after: "
        f"{results['load_average']}; total {results['total_s']} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
