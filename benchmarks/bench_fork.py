"""Warm launches: a Python task that does nothing, ``launch: fork`` against ``exec``.

N nodes of ``forks.noop_fork`` (``launch="fork"``: forks of one warm interpreter that
imported the task) and of ``forks.noop_exec`` (a fresh interpreter per node, which
imports click, loguru, attrs and gristmill), each through the whole engine on the local
backend with 2 workers, against ``seq N | xargs -P2 -I{} true`` measured just before
each run. Target for fork: at most 5 ms per node above that floor (the median of
``--repeat`` runs). exec runs fewer nodes (``--exec-nodes``): each costs an interpreter.

Prints each run and the medians; writes benchmarks/results/fork.json; never fails on
times (but a node that did not succeed stops it).

    PYTHONPATH=src python benchmarks/bench_fork.py [--nodes 2000] [--exec-nodes 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_MS = 5.0
# The warm interpreter imports the task as a node would: from PYTHONPATH or the cwd.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE),
                                                         os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(HERE))

import forks  # noqa: E402 - after PYTHONPATH is set for the processes it starts


def xargs_floor(nodes: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {nodes} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


def timed_run(workflow: str, nodes: int, folder: Path) -> float:
    wf = getattr(forks, workflow)(nodes)
    start = time.perf_counter()
    result = wf.run(run_dir=folder, max_cores=2)
    elapsed = time.perf_counter() - start
    assert result.counts == {"DONE": nodes}, result.counts
    return elapsed


def measure(label: str, workflow: str, nodes: int, repeat: int, root: Path) -> dict[str, Any]:
    floors, runs = [], []
    for rep in range(repeat):
        floors.append(xargs_floor(nodes))
        runs.append(timed_run(workflow, nodes, root / f"{workflow}{rep}"))
    over = [(run - floor) / nodes * 1e3 for floor, run in zip(floors, runs)]
    row = {"launch": label, "nodes": nodes, "xargs_s": [round(f, 3) for f in floors],
           "seconds": [round(r, 3) for r in runs], "ms_per_node": [round(o, 3) for o in over],
           "median_ms_per_node": round(statistics.median(over), 3)}
    print(f"launch: {label}: {nodes} nodes; xargs {row['xargs_s']} s, gristmill "
          f"{row['seconds']} s; above xargs {row['ms_per_node']} ms/node, median "
          f"{row['median_ms_per_node']}" + (f" (target <= {TARGET_MS:g})" if label == "fork"
                                            else ""))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--exec-nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure("fork", "forks", options.nodes, options.repeat, Path(tmp)),
                measure("exec", "execs", options.exec_nodes, options.repeat, Path(tmp))]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fork.json").write_text(json.dumps({
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()), "results": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
