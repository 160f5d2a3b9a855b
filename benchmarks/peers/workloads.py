"""One measured workload of bench_peers.py, in a process of its own.

bench_peers.py starts this script once per (workload, tool, size). It times the
workload (min of ``--repeat`` runs, fewer when they overrun ``--budget`` seconds) and
prints one JSON line: ``{"seconds": [...], "startup_s": [...], "nodes": N, "baseline_rss_mb": MB,
"peak_rss_mb": MB}`` (the RSS figures are this process image's own, after imports and at
the end).

    python benchmarks/peers/workloads.py {fan,tree,chain,tasks} TOOL N [--repeat R]

DAG tools: graphlib (the floor), gristmill, dask-delayed, dask-graph (fan only).
Task tools: gristmill, dask, parsl-threads, parsl-htex. Peers are imported only here,
only for their own rows, so one missing peer never stops the others.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import graphlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Measure = Callable[[int], "tuple[int, float]"]  # n -> (nodes, startup seconds)


def rss_mb() -> float:
    """Peak RSS of this process image so far, in MiB.

    VmHWM where /proc has it: ``ru_maxrss`` survives ``exec`` on Linux, so a child's
    would start at its parent's size when it was forked.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- DAG construction: build the shape and resolve it into what a run needs ----


def graphlib_dag(shape: str, n: int) -> int:
    """The floor: a dict of the same shape and ``TopologicalSorter.static_order``."""
    graph: dict[Any, Any]
    if shape == "fan":
        graph = {("fit", i): () for i in range(n)}
        graph["gather"] = [("fit", i) for i in range(n)]
    elif shape == "tree":
        graph = {i: ((i - 1) // 2,) if i else () for i in range(n)}
    else:
        graph = {i: (i - 1,) if i else () for i in range(n)}
    return len(list(graphlib.TopologicalSorter(graph).static_order()))


def gristmill_dag(shape: str, n: int) -> int:
    """Record with ``@gm.workflow``, then ``len(wf)`` and every identity (a full resolve)."""
    import gm_flows

    wf = getattr(gm_flows, shape)(n)
    nodes = len(wf)
    assert len(wf.graph().identities()) == nodes
    return nodes


def _fit(i: int, *upstream: object) -> int:
    return i


def _gather(parts: list[int]) -> int:
    return len(parts)


def dask_delayed_dag(shape: str, n: int) -> int:
    """``dask.delayed`` calls as a user writes them, the graph materialised and ordered."""
    import dask.order
    from dask import delayed
    from dask.base import collections_to_expr

    if shape == "fan":
        parts = [delayed(_fit)(i) for i in range(n)]
        roots = [delayed(_gather)(parts)]
    elif shape == "tree":
        roots = [delayed(_fit)(0)]
        for i in range(1, n):
            roots.append(delayed(_fit)(i, roots[(i - 1) // 2]))
    else:  # a chain grows about quadratically in n (see bench_peers.NOTES)
        raise SystemExit("dask-delayed is measured on the fan and tree shapes only")
    graph = dict(collections_to_expr(roots, optimize_graph=False).__dask_graph__())
    return len(dask.order.order(graph))


def dask_graph_dag(shape: str, n: int) -> int:
    """dask's low-level API (a dict of task tuples) and ``dask.order``, as compute does."""
    import dask.order

    if shape != "fan":
        raise SystemExit("dask-graph is measured on the fan shape only")
    graph: dict[str, Any] = {f"fit-{i}": (_fit, i) for i in range(n)}
    graph["gather"] = (_gather, [f"fit-{i}" for i in range(n)])
    return len(dask.order.order(graph))


DAG_TOOLS: dict[str, Callable[[str, int], int]] = {
    "graphlib": graphlib_dag,
    "gristmill": gristmill_dag,
    "dask-delayed": dask_delayed_dag,
    "dask-graph": dask_graph_dag,
}


# ---- per-task overhead: n `true` processes, 2 at a time ----


def gristmill_tasks(n: int) -> tuple[int, float]:
    """The full engine on the local backend: record, persist, dispatch, store, collect."""
    import gm_flows

    with tempfile.TemporaryDirectory() as tmp:
        result = gm_flows.independent(n).run(run_dir=Path(tmp), max_cores=2)
    assert result.counts == {"DONE": n}, result.counts
    return n, 0.0


def run_true(i: int) -> int:
    """A dask task that runs a real ``true`` process, like every other tool here."""
    subprocess.run(["true"], check=True)
    return i


def dask_tasks(n: int) -> tuple[int, float]:
    """``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``, one map + gather."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        startup = time.perf_counter() - start
        done = client.gather(client.map(run_true, range(n), pure=False))
    assert len(done) == n
    return n, startup


def parsl_tasks(n: int, executor: str) -> tuple[int, float]:
    """Parsl ``bash_app`` returning ``true`` on a 2-thread pool or a 2-worker HTEX."""
    import parsl
    from parsl.app.app import bash_app
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
    from parsl.providers import LocalProvider

    def noop() -> str:
        return "true"

    app = bash_app(noop)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        chosen: Any
        if executor == "threads":
            chosen = ThreadPoolExecutor(max_threads=2, label="threads")
        else:
            chosen = HighThroughputExecutor(
                label="htex", max_workers_per_node=2, cores_per_worker=1, address="127.0.0.1",
                provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
            )
        dfk = parsl.load(Config(executors=[chosen], run_dir=tmp))
        try:
            deadline = start + 120.0
            while executor == "htex" and not chosen.connected_managers():  # the worker pool
                if time.perf_counter() > deadline:
                    raise SystemExit("parsl-htex: no worker pool connected within 120 s")
                time.sleep(0.02)
            startup = time.perf_counter() - start
            futures = [app() for _ in range(n)]
            codes = [f.result() for f in futures]
        finally:
            dfk.cleanup()
            parsl.clear()
    assert codes == [0] * n
    return n, startup


TASK_TOOLS: dict[str, Measure] = {
    "gristmill": gristmill_tasks,
    "dask": dask_tasks,
    "parsl-threads": lambda n: parsl_tasks(n, "threads"),
    "parsl-htex": lambda n: parsl_tasks(n, "htex"),
}


def measure(workload: str, tool: str, n: int, repeat: int, budget: float) -> dict[str, Any]:
    """Time ``repeat`` runs (stopping early once ``budget`` seconds are spent)."""
    if workload == "tasks":
        run = TASK_TOOLS[tool]
    else:
        build = DAG_TOOLS[tool]
        def run(size: int) -> tuple[int, float]:
            return build(workload, size), 0.0
    baseline = rss_mb()
    seconds: list[float] = []
    startups: list[float] = []
    nodes = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        nodes, startup = run(n)
        seconds.append(time.perf_counter() - start)
        startups.append(startup)
        if sum(seconds) + seconds[-1] > budget:
            break
    return {"seconds": seconds, "startup_s": startups, "nodes": nodes,
            "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("workload", choices=["fan", "tree", "chain", "tasks"])
    parser.add_argument("tool", choices=sorted({*DAG_TOOLS, *TASK_TOOLS}))
    parser.add_argument("n", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0,
                        help="stop repeating once this many seconds are spent")
    args = parser.parse_args()
    result = measure(args.workload, args.tool, args.n, args.repeat, args.budget)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
