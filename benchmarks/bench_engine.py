"""Engine overhead and scale on the local backend, each against a floor measured in the same run.

1. 2,000 independent ``true`` tasks plus a fan-in, 2 workers, through the whole engine
   (record, persist, dispatch, store every transition, collect), against
   ``seq 2000 | xargs -P2 -I{} true``. Target: at most 1 ms per task above the floor.
2. Resume of an N-node run whose nodes are all DONE: the time to decide there is nothing
   to do (rebuild, identities, store read, reconcile), against a plain ``SELECT`` of the
   same store as the floor. Target: <= 2 s at 100,000 nodes (<= 3 s at 1,000,000).
3. Peak engine RSS while running a 100,000-node workflow (``--full-run``; slow: it runs
   100,000 real processes). Target: <= 500 MB.

Prints a table and writes benchmarks/results/engine.json; it never fails on times.

    PYTHONPATH=src python benchmarks/bench_engine.py [--tasks 2000] [--resume-nodes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

import gristmill as gm
from gristmill.store import STORE_NAME, NodeState

RESULTS = Path(__file__).parent / "results"


@gm.task(program=["true"], mem="10M")
@click.option("--i", type=int, required=True)
def noop(i: int) -> None:
    """Runs /bin/true; the options are ignored by it."""


@gm.task(program=["true"], mem="10M")
@click.option("--n", type=int, required=True)
def gather(n: int) -> None:
    """The fan-in."""


@gm.workflow
def fan(n: int) -> None:
    gather(n=n, after=noop.map(i=range(n)))


def xargs_floor(tasks: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {tasks + 1} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


def engine_run(tasks: int, root: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    result = fan(tasks).run(run_dir=root, max_cores=2)
    elapsed = time.perf_counter() - start
    return elapsed, dict(result.counts)


def overhead(tasks: int, repeat: int) -> dict[str, float]:
    floors, engines = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            floors.append(xargs_floor(tasks))
            elapsed, counts = engine_run(tasks, Path(tmp))
            assert counts == {"DONE": tasks + 1}, counts
            engines.append(elapsed)
    floor, engine = min(floors), min(engines)
    return {
        "tasks": tasks + 1,
        "xargs_s": round(floor, 3),
        "engine_s": round(engine, 3),
        "overhead_ms_per_task": round((engine - floor) / (tasks + 1) * 1000, 3),
        "ratio": round(engine / floor, 2),
    }


def resume_decision(nodes: int) -> dict[str, float]:
    """Mark every node of a persisted run DONE, then time a resume that has nothing to do."""
    root = Path(tempfile.mkdtemp(prefix="gm-resume-"))
    try:
        from gristmill import runner
        from gristmill.lock import RunLock
        from gristmill.store import Store

        wf = fan(nodes - 1)
        graph = wf.graph()
        run_dir = runner.runs.make_run_directory(root)
        with RunLock(run_dir):
            store = Store.create(run_dir, {"function": wf.function, "args": wf.args})
            store.write_dag(runner._unit_rows(graph), graph.identities(),
                            runner._unit_of_nodes(graph))
            with store.transaction() as cur:
                cur.execute("UPDATE nodes SET state = ?", (int(NodeState.DONE),))
            store.close()
        start = time.perf_counter()
        conn = sqlite3.connect(run_dir / STORE_NAME)
        rows = conn.execute("SELECT identity, state FROM nodes").fetchall()
        conn.close()
        floor = time.perf_counter() - start
        assert len(rows) == nodes
        start = time.perf_counter()
        result = fan(nodes - 1).run(run_dir=run_dir, max_cores=2)
        decision = time.perf_counter() - start
        assert result.counts == {"DONE": nodes}, result.counts
        return {"nodes": nodes, "select_floor_s": round(floor, 3),
                "resume_s": round(decision, 3), "ratio": round(decision / floor, 1)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def full_run_rss(nodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = fan(nodes - 1).run(run_dir=Path(tmp), max_cores=2)
        elapsed = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"nodes": nodes, "ok": result.ok, "elapsed_s": round(elapsed, 1),
            "peak_rss_mb": round(rss_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resume-nodes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--full-run", type=int, default=0, metavar="NODES",
                        help="also run a workflow of this many nodes and report peak RSS")
    args = parser.parse_args()
    results: dict[str, object] = {"python": sys.version.split()[0]}
    over = overhead(args.tasks, args.repeat)
    results["overhead"] = over
    print(f"{over['tasks']} true tasks, 2 workers: engine {over['engine_s']} s, xargs "
          f"{over['xargs_s']} s -> {over['overhead_ms_per_task']} ms/task above the floor "
          f"(ratio {over['ratio']}; target <= 1 ms/task)")
    results["resume"] = []
    for nodes in args.resume_nodes:
        res = resume_decision(nodes)
        results["resume"].append(res)  # type: ignore[attr-defined]
        print(f"resume of {nodes} DONE nodes: {res['resume_s']} s (a bare SELECT of the store: "
              f"{res['select_floor_s']} s, ratio {res['ratio']})")
    if args.full_run:
        full = full_run_rss(args.full_run)
        results["full_run"] = full
        print(f"{full['nodes']}-node run: {full['elapsed_s']} s, peak RSS {full['peak_rss_mb']} MB"
              " (target <= 500 MB at 100,000)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
