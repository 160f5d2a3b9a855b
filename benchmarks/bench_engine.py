"""Engine overhead, memory and resume at scale, each against a floor measured in the same run.

1. 2,000 independent ``true`` tasks plus a fan-in, 2 workers, through the whole engine on
   the local backend (record, persist, dispatch, store every transition, collect), against
   ``seq 2001 | xargs -P2 -I{} true``. Target: at most 1 ms per task above the floor.
2. An N-node run (a map of N - 1 plus a fan-in) through the real runner and engine with
   ``InstantBackend``, defined here, whose jobs succeed the moment they are submitted: the
   time and peak RSS are the engine's own (the local backend's supervisor is another
   process, and would only add the tasks' time). Floor: the peak RSS of an interpreter
   that imported gristmill and recorded the same workflow. Target: <= 1.5 GB at 1,000,000.
3. Resume of that finished run: the time to decide there is nothing to do (record,
   identities, store check and read, reconcile), against a bare ``SELECT`` of the same
   store. Target: <= 3 s at 1,000,000 nodes.
4. ``--dry-run`` of that resume (record, identities, the same decision, a table per task;
   nothing written). Target: a few seconds at 1,000,000 nodes.

Every measurement runs in a process of its own (``--child``), which reports its own peak
RSS (VmHWM) and times. Prints a table and writes benchmarks/results/engine.json; it never
fails on times.

    PYTHONPATH=src python benchmarks/bench_engine.py [--tasks 2000] [--nodes 100000 1000000]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peers.gm_flows import fan  # the same map + fan-in bench_peers.py runs

from gristmill.backends.base import Capabilities, JobHandle, JobRequest, JobStatus
from gristmill.backends.registry import BACKENDS
from gristmill.states import JobState
from gristmill.store.db import STORE_NAME

RESULTS = Path(__file__).parent / "results"
TARGET_OVERHEAD_MS = 1.0
TARGET_RSS_MB = 1500
TARGET_RESUME_S = 3.0
_SUCCEEDED = JobStatus(JobState.SUCCEEDED, exit_code=0)


class InstantBackend:
    """Every job succeeds as soon as it is submitted: what is left is the engine's own cost."""

    name = "instant"
    capabilities = Capabilities(reattach=False)
    settings = ()

    def __init__(self, **options: Any) -> None:
        self._next = 0

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        first, self._next = self._next, self._next + len(jobs)
        return [
            JobHandle(self.name, str(first + i), job.key, str(job.result_path))
            for i, job in enumerate(jobs)
        ]

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        return dict.fromkeys(handles, _SUCCEEDED)

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Nothing runs, so nothing to stop."""

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Nothing runs, so nothing to adopt."""

    def wait(self, timeout: float) -> None:
        """Every job has ended already."""

    def close(self) -> None:
        """Holds nothing."""


BACKENDS.setdefault(InstantBackend.name, f"{__name__}:InstantBackend")


# -- measurements, each in a child process ----------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_run(nodes: int, root: str) -> dict[str, Any]:
    wf = fan(nodes - 1)
    start = time.perf_counter()
    result = wf.run(backend=InstantBackend.name, run_dir=root)
    elapsed = time.perf_counter() - start
    assert result.counts == {"DONE": nodes}, result.counts
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb(), "run_dir": str(result.run_dir)}


def child_record(nodes: int) -> dict[str, Any]:
    start = time.perf_counter()
    wf = fan(nodes - 1)
    assert len(wf) == nodes
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def child_identities(nodes: int) -> dict[str, Any]:
    wf = fan(nodes - 1)
    start = time.perf_counter()
    assert len(wf.graph().identities()) == nodes
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def child_resume(nodes: int, run_dir: str) -> dict[str, Any]:
    start = time.perf_counter()
    result = fan(nodes - 1).run(run_dir=run_dir, max_cores=2)
    elapsed = time.perf_counter() - start
    assert result.counts == {"DONE": nodes}, result.counts
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb()}


def child_dryrun(nodes: int, run_dir: str) -> dict[str, Any]:
    from gristmill.engine.plan import RunOptions, make_plan
    from gristmill.engine.preview import preview_plan

    start = time.perf_counter()
    plan = make_plan(fan(nodes - 1), RunOptions(backend=InstantBackend.name))
    found = preview_plan(plan, run_dir)
    elapsed = time.perf_counter() - start
    assert (found.total.nodes, found.total.kept) == (nodes, nodes), found
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb()}


def child_select(nodes: int, run_dir: str) -> dict[str, Any]:
    start = time.perf_counter()
    conn = sqlite3.connect(Path(run_dir) / STORE_NAME)
    rows = conn.execute("SELECT identity, state FROM nodes").fetchall()
    conn.close()
    elapsed = time.perf_counter() - start
    assert len(rows) == nodes
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb()}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "run": child_run, "record": child_record, "identities": child_identities,
    "resume": child_resume, "select": child_select, "dryrun": child_dryrun,
}


def in_child(kind: str, nodes: int, *args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON answer."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(nodes), *args],
        capture_output=True, text=True, env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} {nodes} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


# -- sections -------------------------------------------------------------------------------


def xargs_floor(tasks: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {tasks + 1} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


def overhead(tasks: int, repeat: int) -> dict[str, Any]:
    floors, engines = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            floors.append(xargs_floor(tasks))
            start = time.perf_counter()
            result = fan(tasks).run(run_dir=Path(tmp), max_cores=2)
            engines.append(time.perf_counter() - start)
            assert result.counts == {"DONE": tasks + 1}, result.counts
    floor, engine = min(floors), min(engines)
    return {
        "tasks": tasks + 1,
        "xargs_s": round(floor, 3),
        "engine_s": round(engine, 3),
        "overhead_ms_per_task": round((engine - floor) / (tasks + 1) * 1000, 3),
        "ratio": round(engine / floor, 2),
    }


def scale(nodes: int, repeat: int) -> dict[str, Any]:
    """An N-node run on InstantBackend, its floors, then resumes of the finished run."""
    root = tempfile.mkdtemp(prefix="gm-bench-engine-")
    try:
        record = in_child("record", nodes)
        identities = in_child("identities", nodes)
        run = in_child("run", nodes, root)
        store_mb = (Path(run["run_dir"]) / STORE_NAME).stat().st_size / 2**20
        selects = [in_child("select", nodes, run["run_dir"]) for _ in range(repeat)]
        resumes = [in_child("resume", nodes, run["run_dir"]) for _ in range(repeat)]
        dry = in_child("dryrun", nodes, run["run_dir"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    select = min(s["seconds"] for s in selects)
    resume = min(r["seconds"] for r in resumes)
    return {
        "nodes": nodes,
        "run_s": round(run["seconds"], 2),
        "run_us_per_node": round(run["seconds"] / nodes * 1e6, 1),
        "run_peak_rss_mb": round(run["peak_rss_mb"]),
        "record_peak_rss_mb": round(record["peak_rss_mb"]),
        "rss_ratio": round(run["peak_rss_mb"] / record["peak_rss_mb"], 2),
        "identities_peak_rss_mb": round(identities["peak_rss_mb"]),
        "store_mb": round(store_mb),
        "resume_s": round(resume, 3),
        "resume_all_s": [round(r["seconds"], 3) for r in resumes],
        "resume_peak_rss_mb": round(min(r["peak_rss_mb"] for r in resumes)),
        "select_floor_s": round(select, 3),
        "resume_ratio": round(resume / select, 1),
        "dry_run_s": round(dry["seconds"], 3),
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "gristmill": importlib.metadata.version("gristmill"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000,
                        help="true tasks for the overhead section (0 skips it)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="*", default=[100_000],
                        help="sizes of the InstantBackend run and its resume")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, nodes, *rest = args.child
        sys.stdout.write(json.dumps(CHILDREN[kind](int(nodes), *rest)) + "\n")
        return
    results: dict[str, Any] = {"versions": versions()}
    if args.tasks:
        over = overhead(args.tasks, args.repeat)
        results["overhead"] = over
        print(f"{over['tasks']} true tasks, local backend, 2 workers: engine {over['engine_s']} s,"
              f" xargs {over['xargs_s']} s -> {over['overhead_ms_per_task']} ms/task above the "
              f"floor (ratio {over['ratio']}; target <= {TARGET_OVERHEAD_MS:g} ms/task)")
    results["scale"] = []
    for nodes in args.nodes:
        row = scale(nodes, args.repeat)
        results["scale"].append(row)
        print(f"{nodes:,}-node run on InstantBackend: {row['run_s']} s "
              f"({row['run_us_per_node']} us/node), peak RSS {row['run_peak_rss_mb']} MB "
              f"(x{row['rss_ratio']} the {row['record_peak_rss_mb']} MB of recording it; "
              f"target <= {TARGET_RSS_MB} MB); store {row['store_mb']} MB")
        print(f"  resume of its {nodes:,} DONE nodes: {row['resume_s']} s (runs: "
              f"{row['resume_all_s']}; a bare SELECT of the store: {row['select_floor_s']} s, "
              f"ratio {row['resume_ratio']}; target <= {TARGET_RESUME_S:g} s at 1,000,000)")
        print(f"  --dry-run of that resume: {row['dry_run_s']} s")
    results["versions"]["load_average_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
