"""1,000 ``true`` tasks on the jobmon backend against the local backend, as a ratio.

Both run the same JobRequests through the Backend protocol (submit all, then wait and
poll until every one has finished; any job that did not succeed stops the script, see
drive.py): ``LocalBackend(max_cores=2)``, the floor, then
``JobmonBackend`` on jobmon's ``multiprocess`` cluster (3 worker processes) against a
jobmon server this script starts with ci/jobmon/start.sh (SQLite, 127.0.0.1) and stops
at the end. Prints seconds, ms per task and the ratio; it never fails on times.

    PYTHONPATH=src python benchmarks/bench_jobmon.py [--tasks 1000] [--cluster multiprocess]

Needs jobmon-client 3.3.0 / jobmon-core >= 3.4.7 importable here; start.sh makes the
server's own venv (jobmon-server 3.2.2) on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from drive import drive

from gristmill.backends.base import Backend, JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import Resources

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "ci" / "jobmon"
RESULTS = Path(__file__).resolve().parent / "results" / "jobmon.json"


def requests(tasks: int, run_dir: Path) -> list[JobRequest]:
    logs = run_dir / "logs" / "noop"  # the jobmon backend finds the run dir from here
    logs.mkdir(parents=True)
    return [
        JobRequest(key=f"n{i}.1", task="noop", job_name=f"noop_{i}", argv=("true",),
                   resources=Resources(), stdout=logs / f"noop_{i}.1.out",
                   stderr=logs / f"noop_{i}.1.err", result_path=logs / f"noop_{i}.1.result.json")
        for i in range(tasks)
    ]


def run_all(backend: Backend, jobs: list[JobRequest]) -> tuple[float, int]:
    """Seconds from submit to the last task seen succeeded; how many polls it took."""
    start = time.perf_counter()
    polls = drive(backend, jobs, wait=0.5)
    return time.perf_counter() - start, polls


def wait_for_driver(run_dir: Path, timeout: float = 120.0) -> None:
    """Let the jobmon driver finish its bookkeeping before the server goes away."""
    pid = json.loads((run_dir / "jobmon" / "driver.json").read_text())["pid"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)


def start_server(folder: Path) -> tuple[str, dict[str, str], float]:
    env = {**os.environ, "JOBMON_KIT_DIR": str(folder)}
    start = time.perf_counter()
    done = subprocess.run(["bash", str(KIT / "start.sh")], env=env, capture_output=True,
                          text=True, check=True)
    seconds = time.perf_counter() - start
    url = done.stdout.strip().rpartition("=")[2]
    return url, env, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--cluster", default="multiprocess")
    parser.add_argument("--no-save", action="store_true", help="do not write results/jobmon.json")
    options = parser.parse_args()
    try:
        import jobmon.client  # only asking whether it is there
    except ImportError:
        print("jobmon-client is not installed (pip install 'gristmill[jobmon]'): skipped")
        return
    from gristmill.backends.jobmon.backend import JobmonBackend

    n = options.tasks
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        local_backend = LocalBackend(max_cores=2)
        try:
            local, _ = run_all(local_backend, requests(n, folder / "local"))
        finally:
            local_backend.close()
        url, env, server_start = start_server(folder / "server")
        try:
            jobmon_backend = JobmonBackend(service_url=url, cluster=options.cluster)
            jobmon, polls = run_all(jobmon_backend, requests(n, folder / "jobmon"))
            wait_for_driver(folder / "jobmon")
        finally:
            subprocess.run(["bash", str(KIT / "stop.sh")], env=env, capture_output=True,
                           check=False)
    ratio = jobmon / local
    print(f"{n} true tasks: LocalBackend(max_cores=2) {local:.2f} s "
          f"({local / n * 1e3:.2f} ms/task); jobmon {options.cluster} {jobmon:.2f} s "
          f"({jobmon / n * 1e3:.1f} ms/task, {polls} polls, one server request each); "
          f"ratio {ratio:.1f}; server start {server_start:.1f} s")
    if not options.no_save:
        RESULTS.write_text(json.dumps({
            "tasks": n, "cluster": options.cluster, "local_s": round(local, 3),
            "jobmon_s": round(jobmon, 3), "ratio": round(ratio, 2), "polls": polls,
            "server_start_s": round(server_start, 2), "python": platform.python_version(),
            "load_average": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d"),
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
