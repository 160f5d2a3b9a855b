"""The monitor's helpers (memory sizes for reasons, the RSS sampling schedule) and the CPU
time it counts for an attempt, on real processes.

Whole attempts (limits, signals, process groups) run through it in tests/worker/test_wrapper.py
and tests/backends/test_local.py.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gristmill
from gristmill.states import JobState
from gristmill.worker.monitor import human_size, sample_interval, transient
from gristmill.worker.result import AttemptResult, read_result
from gristmill.worker.wrapper import run_attempt

MB = 2**20


def test_helpers() -> None:
    assert human_size(480 * MB) == "480M"
    assert human_size(int(1.5 * 2**30)) == "1.5G"
    assert human_size(512) == "512B"
    assert [sample_interval(age) for age in (0, 2.5, 4.5, 7, 600)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_only_a_shortage_of_the_machine_is_transient() -> None:
    """Descriptors, processes, memory: tried again. A missing or forbidden program, a bad
    argument: the task's failure, at once."""
    short = [errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS]
    assert all(transient(OSError(code, os.strerror(code))) for code in short)
    assert not any(transient(OSError(code, os.strerror(code)))
                   for code in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.E2BIG))
    assert not transient(ValueError("embedded null byte"))


# -- CPU time, on real processes ------------------------------------------------------------

#: Burns argv[1] seconds of CPU (not of the clock: the same on a loaded machine).
BURN = ("import sys, time\nend = time.process_time() + float(sys.argv[1])\n"
        "while time.process_time() < end:\n    pass\n")

#: Forks a child that burns 0.5 s of CPU; the parent exits without reaping it: after the
#: child ended (``ended``) or while it still burns, once it used 0.5 s (``running``).
LEAVE = """
import os, sys, time
pid = os.fork()
if pid == 0:
    end = time.process_time() + (0.5 if sys.argv[1] == "ended" else 3600)
    while time.process_time() < end:
        pass
    os._exit(0)

def stat(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rpartition(")")[2].split()

deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    fields = stat(pid)
    if sys.argv[1] == "ended" and fields[0] == "Z":
        break
    used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if sys.argv[1] == "running" and used >= 0.5:
        break
    time.sleep(0.01)
else:
    sys.exit(9)
"""


def _attempt(tmp_path: Path, *argv: str) -> AttemptResult:
    return run_attempt(list(argv), stdout=tmp_path / "out", stderr=tmp_path / "err")


def test_cpu_time_is_what_the_task_burned_not_how_long_it_ran(tmp_path: Path) -> None:
    busy = _attempt(tmp_path, sys.executable, "-c", BURN, "0.5")
    idle = _attempt(tmp_path, sys.executable, "-c", "import time; time.sleep(0.5)")
    assert busy.state is idle.state is JobState.SUCCEEDED
    assert busy.cpu_time is not None
    assert idle.cpu_time is not None
    assert 0.5 <= busy.cpu_time < 0.5 + 5  # and the interpreter's start
    assert idle.cpu_time < 0.3  # the interpreter's start only
    assert idle.elapsed >= 0.5


def test_cpu_time_counts_a_child_the_task_waited_for(tmp_path: Path) -> None:
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}, '0.5'])"
    result = _attempt(tmp_path, sys.executable, "-c", parent)
    assert result.state is JobState.SUCCEEDED
    assert result.cpu_time is not None
    assert result.cpu_time >= 0.5


@pytest.mark.parametrize("child", ["ended", "running"])
def test_cpu_time_counts_a_child_the_task_left_behind(tmp_path: Path, child: str) -> None:
    """A child the task never waited for is reparented to the wrapper (a subreaper) and
    reaped by it, ended on its own or killed with the attempt: its CPU time is counted."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    src = str(Path(gristmill.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "gristmill.worker", "--result", str(tmp_path / "r.json"),
         "--stdout", str(tmp_path / "o"), "--stderr", str(tmp_path / "e"), "--",
         sys.executable, str(script), child],
        env=env, timeout=120, check=False)
    assert done.returncode == 0, (tmp_path / "e").read_text()
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert result.cpu_time is not None
    assert result.cpu_time >= 0.5
