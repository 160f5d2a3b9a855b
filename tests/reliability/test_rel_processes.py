"""Processes that misbehave or die: killed tasks, the OOM killer, a dead supervisor, forks.

Each case runs a real workflow on the local backend and asserts the node states, each
attempt's state and reason, that the side effect of every DONE node happened once,
and that no process of the run is left behind.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from gm_testing import kill_if_alive, wait_for
from rel_support import (
    GRISTMILL,
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

from gristmill.backends.base import JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.store.db import Store
from gristmill.worker.procfs import children, cmdline
from gristmill.worker.wrapper import run_attempt

M = 2**20


def victim_run(
    engines: list[subprocess.Popen[bytes]], tmp_path: Path, *args: str
) -> subprocess.Popen[bytes]:
    return start(engines, "run", "rel_tasks:one_victim", "--pidfile", str(tmp_path / "pid"),
                 "--path", str(tmp_path / "shared"), "--run-dir", str(tmp_path / "runs"), *args)


def parent_of(pid: int) -> int:
    """The parent pid of ``pid``, from /proc (the field after the state)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_task_killed_from_outside_fails_with_the_signal_and_is_retried(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    proc = victim_run(engines, tmp_path, "--retries", "1")
    wait_while_running(proc, lambda: pids(tmp_path / "pid"), 30, "the task to start")
    os.kill(pids(tmp_path / "pid")[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    counts, attempts = read_store(latest(tmp_path / "runs"))
    assert counts == {("victim", "DONE"): 1}
    assert [(a.state, a.signal, a.reason) for a in attempts] == [
        ("FAILED", signal.SIGKILL, "killed by SIGKILL"), ("SUCCEEDED", None, "exit code 0")]
    assert lines(tmp_path / "shared") == ["victim", "0"]


def test_a_task_the_oom_killer_takes_is_oom_and_retried_with_more_memory(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """Over its limit and SIGKILLed from outside (as the kernel does): OOM, retried with x1.5.

    The kernel acts between two samples of the supervisor's RSS watchdog, which would
    otherwise kill a task over its limit itself (a different path to the same verdict).
    To take that path every time, whatever the machine's load, the supervisor is
    stopped (SIGSTOP: it samples nothing) from before the task touches its memory until
    the task has been killed, so the verdict can come only from the killed task's own
    peak RSS, which the kernel reports at ``wait4``.
    """
    pidfile, go = tmp_path / "pid", tmp_path / "go"
    touched = tmp_path / "go.touched"
    proc = victim_run(engines, tmp_path, "--mb", "100", "--mem", "100M", "--retries", "1",
                      "--go", str(go))
    wait_while_running(proc, lambda: pids(pidfile), 120, "the task to start")
    (task,) = pids(pidfile)
    supervisor = parent_of(task)
    assert "gristmill.backends.local.supervisor" in cmdline(supervisor)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        go.touch()
        wait_for(touched.exists, 120, "the task to touch 100 MiB")
        assert lines(touched) == [str(100 * M)]
        os.kill(task, signal.SIGKILL)
        assert pid_gone(task, timeout=60)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    counts, (first, second) = read_store(latest(tmp_path / "runs"))
    assert counts == {("victim", "DONE"): 1}
    assert (first.state, first.signal, first.resources["mem"]) == ("OOM", signal.SIGKILL, 100 * M)
    assert first.reason.startswith("exceeded memory limit 100M (peak 1")
    assert first.peak_rss is not None
    assert first.peak_rss > 100 * M
    assert (second.state, second.resources["mem"]) == ("SUCCEEDED", 150 * M)
    assert pids(pidfile)[0] == task  # the retry wrote the second line, and did not wait
    assert len(pids(pidfile)) == 2
    assert lines(tmp_path / "shared") == ["victim", str(100 * M)]


def test_a_killed_supervisor_takes_its_tasks_along_and_the_run_resumes(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """The local backend's supervisor SIGKILLed (say, by the OOM killer) mid-run.

    Its running tasks are killed too (none runs unsupervised), their attempts are LOST
    and retried; the supervisor being gone, the retries cannot be submitted and fail
    with that reason; downstream nodes are UPSTREAM_FAILED. A resume finishes the run.
    """
    shared, release = tmp_path / "shared", tmp_path / "release"
    proc = start(engines, "run", "rel_tasks:holders", "--pidfile", str(tmp_path / "pid"),
                 "--release", str(release), "--path", str(shared),
                 "--run-dir", str(tmp_path / "runs"))
    holders = [tmp_path / "pid.0", tmp_path / "pid.1"]
    wait_while_running(proc, lambda: all(pids(p) for p in holders), 30, "the holders")
    run_dir = latest(tmp_path / "runs")
    store = Store.open(run_dir, readonly=True)
    try:
        (supervisor,) = {int(str(a.job_id).split(".")[0]) for a in store.attempts()}
    finally:
        store.close()
    os.kill(supervisor, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err.decode()
    assert "not complete (FAILED=2, UPSTREAM_FAILED=1)" in out.decode()
    assert f"the local supervisor (pid {supervisor}) died with 2 jobs unfinished" in err.decode()
    for pid in (pid for p in holders for pid in pids(p)):
        assert pid_gone(pid, timeout=5), "a task outlived its supervisor"
    counts, attempts = read_store(run_dir)
    assert counts == {("hold", "FAILED"): 2, ("effect", "UPSTREAM_FAILED"): 1}
    assert sorted((a.attempt, a.state) for a in attempts) == [
        (1, "LOST"), (1, "LOST"), (2, "FAILED"), (2, "FAILED")]
    for attempt in attempts:
        assert f"supervisor (pid {supervisor})" in attempt.reason
    release.touch()
    resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    once_each(shared, ["hold:pid.0", "hold:pid.1", "99"])


def test_children_a_task_leaves_in_its_process_group_are_killed(
    rt: ModuleType, tmp_path: Path
) -> None:
    done = gristmill("run", "rel_tasks:one_forker", "--pidfile", str(tmp_path / "pid"),
                     "--mode", "group", "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    (child,) = pids(tmp_path / "pid")
    assert pid_gone(child, timeout=5), "the task's child outlived it"


def test_children_a_task_daemonizes_into_their_own_session_are_killed(
    rt: ModuleType, tmp_path: Path
) -> None:
    done = gristmill("run", "rel_tasks:one_forker", "--pidfile", str(tmp_path / "pid"),
                     "--mode", "session", "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    (child,) = pids(tmp_path / "pid")
    try:  # killed before the attempt's result is written: gone (or reaped) by now
        assert pid_gone(child, timeout=10), "a child that left the task's session outlived it"
    finally:
        kill_if_alive(child)


@pytest.mark.parametrize(
    ("end", "code", "state"),
    [("succeed", 0, "SUCCEEDED"), ("fail", 1, "FAILED"), ("hang", 1, "TIMEOUT")],
)
def test_a_double_forked_daemon_without_environment_dies_with_its_attempt(
    rt: ModuleType, tmp_path: Path, end: str, code: int, state: str
) -> None:
    """``setsid`` and ``env -i`` leave no process group and no token to find it by: the
    supervisor, its subreaper, still knows whose it is and kills it at the attempt's end."""
    pidfile = tmp_path / "daemon.pid"
    done = gristmill("run", "rel_tasks:one_daemonizer", "--pidfile", str(pidfile),
                     "--end", end, "--run-dir", str(tmp_path / "runs"))
    daemon = int(pidfile.read_text())
    try:
        assert done.returncode == code, done.stderr
        _, attempts = read_store(latest(tmp_path / "runs"))
        assert [a.state for a in attempts] == [state]
        assert pid_gone(daemon, timeout=10), f"the daemon outlived its {state} attempt"
    finally:
        kill_if_alive(daemon)


def test_a_command_line_with_a_nul_byte_fails_that_job_only(tmp_path: Path) -> None:
    """The runner refuses NUL bytes up front; the backend must not die of one either (it
    took the supervisor, and every job it held, down)."""
    def job(key: str, argv: list[str]) -> JobRequest:
        return JobRequest(key=key, task="t", job_name=key, argv=tuple(argv),
                          resources=Resources(cores=1), stdout=tmp_path / f"{key}.out",
                          stderr=tmp_path / f"{key}.err", result_path=tmp_path / f"{key}.json")

    with LocalBackend(max_cores=2) as backend:
        bad, good = backend.submit([job("bad", ["echo", "a\0b"]), job("good", ["echo", "ok"])])
        final: dict[str, JobState] = {}
        reasons: dict[str, str] = {}
        deadline = time.monotonic() + 10
        while len(final) < 2 and time.monotonic() < deadline:
            backend.wait(0.5)
            for handle, status in backend.poll([bad, good]).items():
                if status.state.finished:
                    final[handle.key], reasons[handle.key] = status.state, status.reason
    assert final == {"bad": JobState.FAILED, "good": JobState.SUCCEEDED}
    assert reasons["bad"] == "cannot run echo: embedded null byte in its arguments or environment"
    assert (tmp_path / "good.out").read_text() == "ok\n"
    result = run_attempt(["echo", "a\0b"], stdout=tmp_path / "o", stderr=tmp_path / "e")
    assert (result.state, result.exit_code) == (JobState.FAILED, 126)


def test_attempts_short_of_file_descriptors_wait_and_run_once_without_spending_retries(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """The supervisor runs out of descriptors as the fan-out is due: the four jobs wait
    (the engine's log says so) and run when descriptors return; every node is DONE after
    one attempt, none LOST or FAILED."""
    shared, release, log = tmp_path / "shared", tmp_path / "release", tmp_path / "engine.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*GRISTMILL, "run", "rel_tasks:gate_and_fan", "--path", str(shared), "--pidfile",
             str(tmp_path / "pid"), "--release", str(release), "--fan", "4", "--run-dir",
             str(tmp_path / "runs"), "--max-cores", "8"],
            stdout=subprocess.DEVNULL, stderr=err)
    engines.append(proc)

    def running(predicate: Callable[[], object]) -> Callable[[], object]:
        def check() -> object:
            assert proc.poll() is None, f"the engine exited early:\n{log.read_text()}"
            return predicate()
        return check

    def supervisor() -> int | None:
        return next((pid for pid in children(proc.pid)
                     if "gristmill.backends.local.supervisor" in cmdline(pid)), None)

    wait_for(running(lambda: supervisor() and len(lines(shared)) == 6 and all(
        pids(tmp_path / f"pid.{i}") for i in (0, 1))), 60, "six effects and two holders")
    sup = supervisor()
    assert sup is not None
    wait_for(running(lambda: len(children(sup)) == 2), 30, "the six effects to be reaped")
    limits = resource.prlimit(sup, resource.RLIMIT_NOFILE)
    used = {int(name) for name in os.listdir(f"/proc/{sup}/fd")}
    lowest_free = min(set(range(len(used) + 1)) - used)
    resource.prlimit(sup, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
    try:
        release.touch()  # the holders end, freeing two descriptors: a start needs three
        wait_for(running(lambda: "cannot start yet" in log.read_text()), 60,
                 "the engine to hear that the jobs wait")
    finally:
        resource.prlimit(sup, resource.RLIMIT_NOFILE, limits)
    assert proc.wait(timeout=60) == 0, log.read_text()
    counts, attempts = read_store(latest(tmp_path / "runs"))
    assert counts == {("effect", "DONE"): 6, ("hold", "DONE"): 2, ("quick_effect", "DONE"): 4}
    assert sorted({(a.attempt, a.state) for a in attempts}) == [(1, "SUCCEEDED")]
    assert len(attempts) == 12
    once_each(shared, [*map(str, range(6)), "hold:pid.0", "hold:pid.1",
                       *map(str, range(1000, 1004))])
    assert "Too many open files" in log.read_text()
