"""Dask backend: N ``true`` tasks through the engine on dask against the local backend.

All in the same run, alternating, each the fastest of ``--repeat`` runs:

* floor: ``run(backend="local", max_cores=2)``, the local backend with 2 cores;
* ``dask-local``: ``run(backend="dask", n_workers=2, cores=2)``, the backend's own
  in-process ``LocalCluster`` of 2 one-core workers (its start and stop included);
* ``dask-external``: ``run(backend="dask", scheduler=ADDRESS)`` on a ``dask scheduler``
  and 2 ``dask worker`` processes (``--nthreads 1 --resources "cores=1 ..."``) started
  before the clock starts (connecting is included, their start is not).

Every attempt runs the same monitor on both backends (a ``posix_spawn`` of ``true``,
its result file and two log files); the difference is dask's scheduling round trip per
task plus the engine's. Prints a table with the ratios, writes
benchmarks/results/dask.json; never fails on times.

    PYTHONPATH=src python benchmarks/bench_dask.py [--tasks 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trues import trues

RESULTS = Path(__file__).parent / "results"


@contextmanager
def external_cluster(workers: int = 2) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` one-core ``dask worker`` processes; the address."""
    from distributed import Client

    with tempfile.TemporaryDirectory(prefix="gm-dask-bench-") as tmp:
        info = Path(tmp) / "scheduler.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(info)], **quiet)]
        try:
            deadline = time.monotonic() + 60
            while not info.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            address = json.loads(info.read_text())["address"]
            for n in range(workers):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{n}",
                     "--resources", f"cores=1 memory={2**30}", "--local-directory", tmp],
                    **quiet))
            with Client(address, set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=60)
            yield address
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def timed_run(tasks: int, backend: str, options: dict[str, Any]) -> float:
    with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
        start = time.perf_counter()
        result = trues(tasks).run(backend=backend, run_dir=Path(tmp), **options)
        elapsed = time.perf_counter() - start
    assert result.counts == {"DONE": tasks}, result.counts
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-external", action="store_true",
                        help="skip the run on a separately started scheduler and workers")
    args = parser.parse_args()
    with external_cluster() if not args.no_external else _none() as address:
        setups: dict[str, tuple[str, dict[str, Any]]] = {
            "local": ("local", {"max_cores": 2}),
            "dask-local": ("dask", {"n_workers": 2, "cores": 2}),
        }
        if address:
            setups["dask-external"] = ("dask", {"scheduler": address})
        times: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.repeat):
            for name, (backend, options) in setups.items():
                times[name].append(timed_run(args.tasks, backend, options))
    floor = min(times["local"])
    rows = []
    for name, runs in times.items():
        best = min(runs)
        rows.append({"setup": name, "seconds": round(best, 3),
                     "ms_per_task": round(best / args.tasks * 1000, 3),
                     "ratio_to_local": round(best / floor, 2),
                     "runs": [round(t, 3) for t in runs]})
    print(f"{args.tasks} true tasks, 2 cores, fastest of {args.repeat} "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"{'setup':<15}{'seconds':>10}{'ms/task':>10}{'x local':>10}")
    for row in rows:
        print(f"{row['setup']:<15}{row['seconds']:>10}{row['ms_per_task']:>10}"
              f"{row['ratio_to_local']:>10}")
    import distributed

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dask.json").write_text(json.dumps({
        "python": sys.version.split()[0], "distributed": distributed.__version__,
        "tasks": args.tasks, "repeat": args.repeat, "results": rows,
    }, indent=2) + "\n")


@contextmanager
def _none() -> Iterator[str]:
    yield ""


if __name__ == "__main__":
    main()
