"""Per-task overhead of the local backend on no-op tasks, against an xargs floor.

2,000 ``true`` jobs through ``LocalBackend(max_cores=2)`` (submit all, then wait/poll
until every one is done; the supervisor's start is included), compared with
``seq 2000 | xargs -P2 -I{} true`` measured in the same run. Prints the overhead per
task above the floor (target: at most 1 ms) and the ratio; it never fails on times, but
it fails when a job did not succeed (drive.py): a failed job is not a measured task.

    PYTHONPATH=src python benchmarks/bench_local_backend.py [--tasks 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from drive import drive

from gristmill.backends.base import JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import DEFAULT_RESOURCES, Resources


def xargs_floor(tasks: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"seq {tasks} | xargs -P2 -I{{}} true", shell=True, check=True)
    return time.perf_counter() - start


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where the logs and result files go (default: $TMPDIR)")
    options = parser.parse_args()
    n = options.tasks
    # Files are deleted only at the very end: ext4 is slow to create inodes for a while
    # after thousands were deleted, which a run directory does not do to itself.
    with tempfile.TemporaryDirectory(dir=options.dir) as tmp:
        for label, resources in (("no limits", Resources()), ("1G/1h limits", DEFAULT_RESOURCES)):
            floors, ours = [], []
            for rep in range(options.repeat):
                floors.append(xargs_floor(n))
                ours.append(through_backend(n, Path(tmp) / f"{label[:2]}{rep}", resources))
            floor, best = min(floors), min(ours)
            print(
                f"{label:>12}: xargs {floor:.3f} s, LocalBackend {best:.3f} s for {n} tasks; "
                f"overhead {(best - floor) / n * 1e3:.3f} ms/task above xargs; "
                f"ratio {best / floor:.2f}"
            )


if __name__ == "__main__":
    main()
