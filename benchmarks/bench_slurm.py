"""Slurm backend: N ``true`` tasks through the engine against plain ``sbatch --array`` by hand.

Both run on the project's test cluster (ci/slurm/start.sh; ``SLURM_CONF`` must be
set) in the same process, one after the other, on an otherwise idle queue:

* floor: the same N jobs as plain arrays of ``true`` (split at MaxArraySize, as
  Slurm requires), submitted with ``sbatch --array`` and watched with
  ``squeue`` every 0.5 s until none is pending, running or completing;
* engine: ``@gm.task(program=["true"])`` mapped N times, ``run(backend="slurm")``
  with the engine's default polling, counting every scheduler call
  (``SlurmBackend.calls``).

The difference is gristmill's per-job cost inside the job (the element runner
and the worker wrapper: one Python start-up that imports gristmill) plus the
engine's poll granularity. Prints a table, writes benchmarks/results/slurm.json;
never fails on times. Without a cluster (``SLURM_CONF`` unset, or ``scontrol ping``
failing) it says "skipped: no Slurm cluster answers" and exits 0, so ``nox -s bench``
runs it anywhere.

    PYTHONPATH=src SLURM_CONF=/tmp/gristmill-slurm/etc/slurm.conf \\
        python benchmarks/bench_slurm.py [--tasks 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from trues import trues

from gristmill.backends.base import Backend
from gristmill.backends.registry import make_backend
from gristmill.backends.slurm.backend import SlurmBackend
from gristmill.engine import runner

RESULTS = Path(__file__).parent / "results"
LIVE = "PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED,REQUEUED"


def slurm(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True,
                          timeout=120).stdout


def unreachable() -> str | None:
    """Why no Slurm cluster answers here, or ``None`` when the test cluster does.

    Only the cluster ``SLURM_CONF`` names counts: a machine's default slurm.conf may
    belong to a cluster this benchmark must not fill with jobs.
    """
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set"
    try:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                              check=False, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"scontrol ping: {exc}"
    if done.returncode != 0 or "UP" not in done.stdout:
        return f"scontrol ping: {(done.stdout + done.stderr).strip() or done.returncode}"
    return None


def max_array_size() -> int:
    for line in slurm("scontrol", "show", "config").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value)
    return 1001


def floor(tasks: int, log_dir: Path) -> dict[str, Any]:
    """Plain arrays of ``true``; wall time until squeue shows none of them live."""
    calls: Counter[str] = Counter()
    start = time.perf_counter()
    ids = []
    limit = max_array_size()
    for first in range(0, tasks, limit):
        size = min(limit, tasks - first)
        out = slurm("sbatch", "--parsable", f"--array=0-{size - 1}", "--job-name=floor",
                    f"--output={log_dir}/floor-%A_%a.out", "--wrap", "true")
        calls["sbatch"] += 1
        ids.append(out.strip().split(";")[0])
    while True:
        calls["squeue"] += 1
        live = slurm("squeue", "--noheader", "--array", f"--states={LIVE}", "--format=%i",
                     f"--jobs={','.join(ids)}")
        if not live.strip():
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - start
    return {"wall_s": round(elapsed, 1), "arrays": len(ids), "calls": dict(calls)}


def engine(tasks: int, root: Path) -> dict[str, Any]:
    """The engine on the Slurm backend; the backend's own call counters."""
    made: list[Backend] = []

    def spy(name: str, **options: Any) -> Backend:
        made.append(make_backend(name, **options))
        return made[-1]

    namespace = vars(runner)  # the runner builds its backend through this name
    namespace["make_backend"] = spy
    try:
        start = time.perf_counter()
        result = trues(tasks).run(backend="slurm", run_dir=root)
        elapsed = time.perf_counter() - start
    finally:
        namespace["make_backend"] = make_backend
    assert result.counts == {"DONE": tasks}, result.counts
    (backend,) = made
    assert isinstance(backend, SlurmBackend)
    return {"wall_s": round(elapsed, 1), "calls": dict(sorted(backend.calls.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    why = unreachable()
    if why is not None:
        print(f"bench_slurm: skipped: no Slurm cluster answers ({why}); start the test "
              "cluster with ci/slurm/start.sh and export the SLURM_CONF it prints")
        return
    with tempfile.TemporaryDirectory(prefix="gm-bench-slurm-") as tmp:
        root = Path(tmp)
        hand = floor(args.tasks, root)
        ours = engine(args.tasks, root / "runs")
    per_task_ms = (ours["wall_s"] - hand["wall_s"]) / args.tasks * 1000
    results = {
        "python": sys.version.split()[0],
        "tasks": args.tasks,
        "floor": hand,
        "engine": ours,
        "ratio": round(ours["wall_s"] / hand["wall_s"], 2),
        "overhead_ms_per_task": round(per_task_ms, 1),
    }
    rows = [("", "wall s", "sbatch", "squeue", "sacct", "scontrol"),
            ("plain sbatch --array", hand["wall_s"], hand["calls"].get("sbatch", 0),
             hand["calls"].get("squeue", 0), 0, 0),
            ("gristmill engine", ours["wall_s"], *(ours["calls"].get(c, 0) for c in
                                                   ("sbatch", "squeue", "sacct", "scontrol")))]
    for row in rows:
        print(f"{row[0]:<22}" + "".join(f"{cell!s:>10}" for cell in row[1:]))
    print(f"{args.tasks} true tasks: ratio {results['ratio']}, "
          f"{results['overhead_ms_per_task']} ms/task above the floor")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "slurm.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
