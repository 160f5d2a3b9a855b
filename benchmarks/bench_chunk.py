"""Chunks on Slurm: 100,000 ``true`` nodes with ``chunk: 1000`` against the alternatives.

Three runs on the project's test cluster (ci/slurm/start.sh; ``SLURM_CONF`` must be
set), one after the other in the same process, on an otherwise idle queue:

* by hand: ``sbatch --array=0-99`` (one element per 1,000 nodes) whose elements each
  loop over 1,000 ``true`` commands, watched with ``squeue`` every 0.5 s until none is
  live: the floor for the same work packed the same way;
* chunked: ``noop.map(i=range(N))`` (tests' ``true`` task, benchmarks/trues.py) with
  ``chunk: 1000`` through the engine, counting every scheduler call: N / 1000 array
  elements in as few ``sbatch`` calls as the cluster's ``MaxArraySize`` allows;
* unchunked: the same task without chunks on ``--unchunked`` nodes (2,000), extrapolated
  linearly to N: one array element per node.

Prints a table and writes benchmarks/results/chunk.json; never fails on times. Without
a cluster it says "skipped" and exits 0, as bench_slurm does.

    PYTHONPATH=src SLURM_CONF=/tmp/gristmill-slurm/etc/slurm.conf \\
        python benchmarks/bench_chunk.py [--nodes 100000] [--chunk 1000] [--unchunked 2000]

``--fork`` measures warm launches inside chunks instead: ``--nodes`` nodes of a Python
task that does nothing (benchmarks/forks.py) with ``chunk`` and ``launch: fork`` (one
warm interpreter per element, a fork per node), then ``--exec-nodes`` of the same task
started as ``exec`` (an interpreter per node), both chunked, one after the other; writes
benchmarks/results/chunk_fork.json.

    python benchmarks/bench_chunk.py --fork [--nodes 10000] [--exec-nodes 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_slurm import LIVE, RESULTS, slurm, unreachable
from trues import trues

from gristmill.backends.base import Backend
from gristmill.backends.registry import make_backend
from gristmill.backends.slurm.backend import SlurmBackend
from gristmill.engine import runner
from gristmill.spec.load import Spec


def by_hand(nodes: int, chunk: int, log_dir: Path) -> dict[str, Any]:
    """One array of ``nodes / chunk`` elements, each running ``true`` ``chunk`` times."""
    elements = -(-nodes // chunk)
    start = time.perf_counter()
    out = slurm("sbatch", "--parsable", f"--array=0-{elements - 1}", "--job-name=by-hand",
                f"--output={log_dir}/hand-%A_%a.out",
                "--wrap", f"for i in $(seq {chunk}); do true; done")
    job = out.strip().split(";")[0]
    squeues = 0
    while True:
        squeues += 1
        if not slurm("squeue", "--noheader", "--array", f"--states={LIVE}", "--format=%i",
                     f"--jobs={job}").strip():
            break
        time.sleep(0.5)
    return {"wall_s": round(time.perf_counter() - start, 1), "elements": elements,
            "calls": {"sbatch": 1, "squeue": squeues}}


def engine(nodes: int, root: Path, chunk: int | None, wf: Any = None,
           task: str = "noop") -> dict[str, Any]:
    """The engine on Slurm, chunked or not; its wall time and the backend's calls."""
    made: list[Backend] = []

    submits: list[int] = []

    def spy(name: str, **options: Any) -> Backend:
        backend = make_backend(name, **options)
        submit = backend.submit

        def counted(jobs: Any) -> Any:  # the engine's dispatch batches
            submits.append(len(jobs))
            return submit(jobs)

        backend.submit = counted  # type: ignore[method-assign]
        made.append(backend)
        return backend

    spec = Spec.from_dict({"tasks": {task: {"chunk": chunk}}} if chunk else {})
    namespace = vars(runner)  # the runner builds its backend through this name
    namespace["make_backend"] = spy
    try:
        start = time.perf_counter()
        result = (wf or trues(nodes)).run(backend="slurm", run_dir=root, spec=spec)
        elapsed = time.perf_counter() - start
    finally:
        namespace["make_backend"] = make_backend
    assert result.counts == {"DONE": nodes}, result.counts
    (backend,) = made
    assert isinstance(backend, SlurmBackend)
    return {"nodes": nodes, "wall_s": round(elapsed, 1), "batches": submits,
            "calls": dict(sorted(backend.calls.items())),
            "ms_per_node": round(elapsed * 1000 / nodes, 2)}


def fork_against_exec(nodes: int, exec_nodes: int, chunk: int) -> None:
    """``launch: fork`` against ``exec`` for a chunked Python task that does nothing."""
    here = str(Path(__file__).resolve().parent)  # the batch jobs import forks.py from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here,
                                                             os.environ.get("PYTHONPATH")]))
    import forks

    with tempfile.TemporaryDirectory(prefix="gm-bench-chunk-fork-") as tmp:
        root = Path(tmp)
        fork = engine(nodes, root / "fork", chunk, forks.forks(nodes), "noop_fork")
        plain = engine(exec_nodes, root / "exec", chunk, forks.execs(exec_nodes), "noop_exec")
    results = {"python": sys.version.split()[0], "chunk": chunk, "fork": fork, "exec": plain,
               "exec_over_fork_per_node": round(plain["ms_per_node"] / fork["ms_per_node"], 1)}
    for name, row in (("launch: fork", fork), ("launch: exec", plain)):
        print(f"{name:<14} {row['nodes']:>7} nodes {row['wall_s']:>8} s "
              f"{row['ms_per_node']:>8} ms/node  sbatch {row['calls'].get('sbatch', 0)}")
    print(f"exec costs {results['exec_over_fork_per_node']}x fork per node")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunk_fork.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--unchunked", type=int, default=2000,
                        help="nodes run without chunks (the time is extrapolated)")
    parser.add_argument("--fork", action="store_true",
                        help="a Python no-op task, launch: fork against exec, both chunked")
    parser.add_argument("--exec-nodes", type=int, default=2000,
                        help="with --fork: nodes run as exec (each imports the task)")
    args = parser.parse_args()
    why = unreachable()
    if why is not None:
        print(f"bench_chunk: skipped: no Slurm cluster answers ({why}); start the test "
              "cluster with ci/slurm/start.sh and export the SLURM_CONF it prints")
        return
    if args.fork:
        fork_against_exec(args.nodes, args.exec_nodes, args.chunk)
        return
    with tempfile.TemporaryDirectory(prefix="gm-bench-chunk-") as tmp:
        root = Path(tmp)
        hand = by_hand(args.nodes, args.chunk, root)
        chunked = engine(args.nodes, root / "chunked", args.chunk)
        plain = engine(args.unchunked, root / "plain", None)
    plain_full = plain["wall_s"] * args.nodes / args.unchunked
    results = {
        "python": sys.version.split()[0],
        "nodes": args.nodes,
        "chunk": args.chunk,
        "by_hand": hand,
        "chunked": chunked,
        "unchunked": {**plain, "extrapolated_wall_s": round(plain_full, 1)},
        "chunked_over_by_hand": round(chunked["wall_s"] / hand["wall_s"], 2),
        "unchunked_over_chunked": round(plain_full / chunked["wall_s"], 1),
    }
    rows = [("", "nodes", "wall s", "sbatch", "squeue", "sacct"),
            ("sbatch --array by hand", args.nodes, hand["wall_s"], 1,
             hand["calls"]["squeue"], 0),
            (f"gristmill chunk {args.chunk}", args.nodes, chunked["wall_s"],
             *(chunked["calls"].get(c, 0) for c in ("sbatch", "squeue", "sacct"))),
            ("gristmill unchunked", args.unchunked, plain["wall_s"],
             *(plain["calls"].get(c, 0) for c in ("sbatch", "squeue", "sacct"))),
            ("  extrapolated", args.nodes, round(plain_full, 1), "", "", "")]
    for row in rows:
        print(f"{row[0]:<26}" + "".join(f"{cell!s:>10}" for cell in row[1:]))
    print(f"engine batches handed to the backend (chunked): {chunked['batches']}")
    print(f"chunked is {results['chunked_over_by_hand']}x the hand-written array's time; "
          f"unchunked would take {results['unchunked_over_chunked']}x the chunked time")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunk.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
