"""What gristmill's per-attempt wrapper costs: CPU and peak RSS to run ``/bin/true``.

Every attempt on a cluster runs a wrapper process (an array element, a jobmon try,
``python -m gristmill.worker``); the local backend runs one supervisor per run. Each is
measured on ``/bin/true`` against floors measured in the same run: ``/bin/true`` alone
(the task) and a bare ``python -c pass`` and ``python -I -c pass``. Targets: at most
20 ms of CPU and 15 MB of RSS above the task. Then a task process: ``import gristmill``
and ``gm.task`` against ``import click, loguru`` (target: at most 15 ms above).

CPU is the child's user + system time from ``os.wait4`` (tasks included), best of
``--repeat``. Peak RSS comes from ``/usr/bin/time -f %M`` when it exists: a child's
``ru_maxrss`` starts at its parent's size when it is forked from a large process, so
it is measured from a small one. Never fails on a figure; fails when a wrapper did not
record SUCCEEDED.

    PYTHONPATH=src python benchmarks/bench_wrapper.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gristmill.backends.batch.arrays import element_boot
from gristmill.backends.isolated import GRISTMILL_PARENT, isolated_argv
from gristmill.backends.jobmon.translate import ATTEMPT
from gristmill.backends.local.backend import _BOOT
from gristmill.worker.result import read_result

RESULTS = Path(__file__).parent / "results" / "wrapper.json"
TIME = shutil.which("time", path="/usr/bin:/bin")


def cpu_ms(argv: list[str], repeat: int, pass_fds: tuple[int, ...] = (),
           before: object = None) -> float:
    """Best CPU (user + system, children included) of ``repeat`` runs, in ms."""
    best = float("inf")
    for _ in range(repeat):
        if callable(before):
            before()
        proc = subprocess.Popen(argv, pass_fds=pass_fds, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
        best = min(best, usage.ru_utime + usage.ru_stime)
    return best * 1000


def rss_mb(argv: list[str], repeat: int, pass_fds: tuple[int, ...] = (),
           before: object = None) -> float | None:
    """Smallest peak RSS of ``repeat`` runs in MB, from /usr/bin/time (None without it)."""
    if TIME is None:
        return None
    best = float("inf")
    for _ in range(repeat):
        if callable(before):
            before()
        done = subprocess.run([TIME, "-f", "%M", *argv], pass_fds=pass_fds,
                              capture_output=True, text=True, check=True)
        best = min(best, int(done.stderr.strip().splitlines()[-1]) / 1024)
    return best


class Supervisor:
    """The local backend's supervisor, booted as LocalBackend boots it, with one job."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.fds: tuple[int, int] = (-1, -1)

    def argv(self) -> list[str]:
        return [sys.executable, "-I", "-c", _BOOT, str(GRISTMILL_PARENT / "gristmill"),
                "--requests-fd", "{req}", "--events-fd", "{ev}", "--max-cores", "1",
                "--max-mem", str(2**30)]

    def prepare(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        req_r, req_w = os.pipe()
        ev_r, ev_w = os.pipe()
        request = {"op": "run", "id": 1, "argv": ["/bin/true"], "out": self.files["stdout"],
                   "err": self.files["stderr"], "res": self.files["result"], "mem": None,
                   "rt": 60.0, "cores": 1, "env": None, "cwd": None, "key": "k.1"}
        os.write(req_w, json.dumps(request).encode() + b"\n")
        os.close(req_w)
        os.close(ev_r)  # the events go nowhere: the supervisor carries on without a reader
        self.fds = (req_r, ev_w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    n = options.repeat
    py = sys.executable
    figures: dict[str, dict[str, float | None]] = {}

    def measure(label: str, argv: list[str], **kw: object) -> None:
        figures[label] = {"cpu_ms": cpu_ms(argv, n, **kw),  # type: ignore[arg-type]
                          "rss_mb": rss_mb(argv, max(3, n // 4), **kw)}  # type: ignore[arg-type]
        rss = figures[label]["rss_mb"]
        print(f"{label:34} {figures[label]['cpu_ms']:7.1f} ms CPU"
              + ("" if rss is None else f" {rss:6.1f} MB peak RSS"))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {"result": str(folder / "r.json"), "stdout": str(folder / "o"),
                 "stderr": str(folder / "e")}
        wrapper_args = ["--result", files["result"], "--key", "k.1", "--stdout",
                        files["stdout"], "--stderr", files["stderr"], "--runtime", "60"]
        manifest = folder / "manifest.json"
        manifest.write_text(json.dumps({"version": 2, "task": "t", "scheduler": {}, "jobs": [
            {**files, "key": "k.1", "argv": ["/bin/true"], "runtime": 60}]}))

        measure("/bin/true (the task)", ["/bin/true"])
        measure("python -c pass", [py, "-c", "pass"])
        measure("python -I -c pass", [py, "-I", "-c", "pass"])
        measure("array element", [py, "-I", "-c", element_boot(), str(manifest), "0"])
        measure("jobmon try", [*isolated_argv(py, ATTEMPT), *wrapper_args, "--max-attempts",
                               "1", "--mem", str(2**30), "--", "/bin/true"])
        measure("python -m gristmill.worker", [py, "-m", "gristmill.worker", *wrapper_args,
                                               "--", "/bin/true"])
        supervisor = Supervisor(files)

        def supervisor_argv() -> list[str]:
            req, ev = supervisor.fds
            return [w.format(req=req, ev=ev) for w in supervisor.argv()]

        # the fds change every run: measured one run at a time
        cpus, rsss = [], []
        for _ in range(n):
            supervisor.prepare()
            cpus.append(cpu_ms(supervisor_argv(), 1, pass_fds=supervisor.fds))
        for _ in range(max(3, n // 4)):
            supervisor.prepare()
            rsss.append(rss_mb(supervisor_argv(), 1, pass_fds=supervisor.fds))
        rss_values = [r for r in rsss if r is not None]
        figures["local supervisor, one job"] = {"cpu_ms": min(cpus),
                                                "rss_mb": min(rss_values) if rss_values else None}
        print(f"{'local supervisor, one job':34} {min(cpus):7.1f} ms CPU"
              + (f" {min(rss_values):6.1f} MB peak RSS" if rss_values else ""))
        result = read_result(files["result"], key="k.1")
        if result is None or result.state.value != "SUCCEEDED":
            raise SystemExit(f"the last wrapper did not succeed: {result}")

        measure("task: import click, loguru", [py, "-c", "import click, loguru"])
        measure("task: import gristmill", [py, "-c", "import gristmill"])
        measure("task: import gristmill; gm.task", [py, "-c", "import gristmill; gristmill.task"])

    task = figures["/bin/true (the task)"]
    print("\nabove the task (/bin/true); target <= 20 ms CPU, <= 15 MB RSS:")
    for label in ("python -I -c pass", "array element", "jobmon try",
                  "python -m gristmill.worker", "local supervisor, one job"):
        cpu = figures[label]["cpu_ms"] or 0.0
        rss, floor = figures[label]["rss_mb"], task["rss_mb"]
        extra = "" if rss is None or floor is None else f", {rss - floor:+.1f} MB"
        print(f"  {label:32} {cpu - (task['cpu_ms'] or 0.0):+7.1f} ms{extra}")
    base = figures["task: import click, loguru"]["cpu_ms"] or 0.0
    print("\nabove import click, loguru; target <= 15 ms CPU:")
    for label in ("task: import gristmill", "task: import gristmill; gm.task"):
        print(f"  {label:32} {(figures[label]['cpu_ms'] or 0.0) - base:+7.1f} ms")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"repeat": n, "figures": figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
