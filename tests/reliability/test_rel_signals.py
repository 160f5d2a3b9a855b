"""SIGTERM and Ctrl-C to the engine: live jobs cancelled and gone, the run resumable.

Each case asserts the exit code (130), the message that says how to continue, the
store (finished nodes DONE, the live ones CANCELLED with CANCELLED attempts), that the
cancelled processes are gone, and that a resume then runs each side effect exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
from rel_support import (
    gristmill,
    latest,
    lines,
    once_each,
    pid_gone,
    pids,
    read_store,
    start,
    wait_while_running,
)


def interrupted_run(
    engines: list[subprocess.Popen[bytes]], tmp_path: Path, how: str
) -> tuple[Path, list[int]]:
    """Six quick effects and two live holders, stopped by ``how``; (run dir, holder pids)."""
    shared, pidfile, release = tmp_path / "shared", tmp_path / "pid", tmp_path / "release"
    proc = start(
        engines, "run", "rel_tasks:effects_and_holders", "--path", str(shared), "--pidfile",
        str(pidfile), "--release", str(release), "--run-dir", str(tmp_path / "runs"),
        "--max-cores", "4", new_session=True,
    )
    holders = [tmp_path / "pid.0", tmp_path / "pid.1"]
    wait_while_running(
        proc, lambda: all(p.exists() for p in holders) and len(lines(shared)) == 6, 30,
        "the holders to start and the effects to finish",
    )
    time.sleep(0.3)  # let the engine record the finished effects
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    elif how == "ctrl-c":  # what a terminal does: SIGINT to the whole foreground group
        os.killpg(proc.pid, signal.SIGINT)
    else:  # an impatient user: Ctrl-C twice
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    run_dir = latest(tmp_path / "runs")
    assert proc.returncode == 130, err.decode()
    assert f"interrupted; continue with: gristmill resume {run_dir}" in err.decode()
    assert "Traceback" not in err.decode()
    summary = f"run {run_dir}: not complete (CANCELLED=2, DONE=6)\n"
    if how == "ctrl-c twice":  # the second may land after the run's record is complete,
        assert out.decode() in ("", summary)  # as the summary is about to be printed
    else:
        assert out.decode() == summary
    return run_dir, [pid for p in holders for pid in pids(p)]


@pytest.mark.parametrize(
    "how", [pytest.param("SIGTERM", marks=pytest.mark.reliability), "ctrl-c", "ctrl-c twice"]
)
def test_a_stopped_engine_cancels_live_jobs_and_resume_finishes_the_rest(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], how: str
) -> None:
    run_dir, holder_pids = interrupted_run(engines, tmp_path, how)
    for pid in holder_pids:
        assert pid_gone(pid), f"holder {pid} outlived the cancelled run"
    counts, attempts = read_store(run_dir)
    assert counts == {("effect", "DONE"): 6, ("hold", "CANCELLED"): 2}
    assert sorted((a.task, a.state) for a in attempts) == [
        *[("effect", "SUCCEEDED")] * 6, *[("hold", "CANCELLED")] * 2]
    assert all(a.ended is not None for a in attempts)
    (tmp_path / "release").touch()
    resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    once_each(tmp_path / "shared", [*map(str, range(6)), "hold:pid.0", "hold:pid.1"])
    counts, attempts = read_store(run_dir)
    assert counts == {("effect", "DONE"): 6, ("hold", "DONE"): 2}
    assert len(attempts) == 10  # effects were not rerun; each holder ran twice


def test_a_task_ignoring_sigterm_is_killed_after_the_grace_period(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "pid"
    proc = start(engines, "run", "rel_tasks:one_stubborn", "--pidfile", str(pidfile),
                 "--run-dir", str(tmp_path / "runs"), "--option", "grace=0.5")
    wait_while_running(proc, pidfile.exists, 30, "the stubborn task to start")
    (task_pid,) = pids(pidfile)
    time.sleep(0.2)  # its SIGTERM handler is set before it writes the pid file
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    stopped = time.monotonic()
    assert not pid_gone(task_pid, timeout=0.2), "SIGTERM alone cannot stop it"
    assert pid_gone(task_pid, timeout=5)
    assert time.monotonic() - stopped < 2.0  # the grace of 0.5 s, not the 60 s it sleeps
    counts, attempts = read_store(latest(tmp_path / "runs"))
    assert counts == {("stubborn", "CANCELLED"): 1}
    assert [a.state for a in attempts] == ["CANCELLED"]


def test_a_task_ignoring_sigterm_past_its_runtime_is_killed_and_times_out(
    rt: ModuleType, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    done = gristmill("run", "rel_tasks:one_stubborn", "--pidfile", str(pidfile), "--runtime",
                     "1", "--retries", "0", "--option", "grace=0.5",
                     "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 1, done.stderr
    (task_pid,) = pids(pidfile)
    assert pid_gone(task_pid, timeout=1)
    counts, (attempt,) = read_store(latest(tmp_path / "runs"))
    assert counts == {("stubborn", "FAILED"): 1}
    assert attempt.state == "TIMEOUT"
    assert attempt.reason == "exceeded runtime 00:00:01 (ignored SIGTERM; killed by SIGKILL " \
        "after 0.5 s)"
    assert attempt.elapsed is not None
    assert 1.4 <= attempt.elapsed < 3.0
