"""Per-task overhead of the local backend on no-op tasks, against an xargs floor.

1. Through the whole engine: 2,000 ``true`` tasks plus a fan-in (``peers/gm_flows.fan``),
   2 workers (record, persist, dispatch, store every transition, collect), against
   ``seq 2001 | xargs -P2 -I{} true`` measured just before each run. Target: at most
   0.45 ms per task above the floor, the median of ``--repeat`` runs.
2. The backend alone: 2,000 ``true`` jobs through ``LocalBackend(max_cores=2)`` (submit
   all, then wait/poll until every one is done; the supervisor's start is included),
   with and without resource limits, against ``seq 2000 | xargs -P2 -I{} true``.

Prints each run and the medians; writes benchmarks/results/local_backend.json. It never
fails on times, but it fails when a job did not succeed (drive.py): a failed job is not
a measured task.

    PYTHONPATH=src python benchmarks/bench_local_backend.py [--tasks 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from drive import drive
from peers.gm_flows import fan

from gristmill.backends.base import JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import DEFAULT_RESOURCES, Resources

RESULTS = Path(__file__).parent / "results"
TARGET_MS = 0.45


def xargs_floor(tasks: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {tasks} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


def through_engine(tasks: int, folder: Path) -> float:
    start = time.perf_counter()
    result = fan(tasks).run(run_dir=folder, max_cores=2)
    elapsed = time.perf_counter() - start
    assert result.counts == {"DONE": tasks + 1}, result.counts
    return elapsed


def through_backend(tasks: int, folder: Path, resources: Resources) -> float:
    jobs = [
        JobRequest(key=f"n{i}.1", task="noop", job_name=f"noop_{i}", argv=("true",),
                   resources=resources, stdout=folder / f"{i}.out", stderr=folder / f"{i}.err",
                   result_path=folder / f"{i}.json")
        for i in range(tasks)
    ]
    start = time.perf_counter()
    backend = LocalBackend(max_cores=2)
    try:
        drive(backend, jobs, wait=10.0)
        return time.perf_counter() - start
    finally:
        backend.close()


def summary(label: str, tasks: int, floors: list[float], runs: list[float]) -> dict[str, Any]:
    """Each run's overhead above the floor measured just before it; their median."""
    over = [(run - floor) / tasks * 1e3 for floor, run in zip(floors, runs)]
    row = {"setup": label, "tasks": tasks, "xargs_s": [round(f, 3) for f in floors],
           "seconds": [round(r, 3) for r in runs], "ms_per_task": [round(o, 3) for o in over],
           "median_ms_per_task": round(statistics.median(over), 3)}
    print(f"{label:>22}: {tasks} tasks; xargs {row['xargs_s']} s, gristmill {row['seconds']} s; "
          f"above xargs {row['ms_per_task']} ms/task, median {row['median_ms_per_task']} "
          f"(target <= {TARGET_MS} through the engine)")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where the run directories go (default: $TMPDIR)")
    options = parser.parse_args()
    n = options.tasks
    rows = []
    # Files are deleted only at the very end: ext4 is slow to create inodes for a while
    # after thousands were deleted, which a run directory does not do to itself.
    with tempfile.TemporaryDirectory(dir=options.dir) as tmp:
        floors, runs = [], []
        for rep in range(options.repeat):
            floors.append(xargs_floor(n + 1))
            runs.append(through_engine(n, Path(tmp) / f"engine{rep}"))
        rows.append(summary("engine + local backend", n + 1, floors, runs))
        for label, resources in (("no limits", Resources()), ("1G/1h limits", DEFAULT_RESOURCES)):
            floors, runs = [], []
            for rep in range(options.repeat):
                floors.append(xargs_floor(n))
                runs.append(through_backend(n, Path(tmp) / f"{label[:2]}{rep}", resources))
            rows.append(summary(f"backend, {label}", n, floors, runs))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_backend.json").write_text(json.dumps({
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()), "results": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
