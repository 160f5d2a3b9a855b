"""The engine killed with SIGKILL anywhere: ``resume`` finishes, each side effect exactly once.

The precise points (inside the DAG write, between handing jobs to the backend and
recording their ids, inside a state update) are hit with the engine's
``GRISTMILL_FAULT`` hook; the seeded trials also kill at random moments by timing.
After the last ``resume`` every node is DONE, every DONE node's side effect is in the
shared file exactly once, every node has exactly one SUCCEEDED attempt, no attempt is
left open, and every supervisor an engine left behind has exited.

The same trials run a workflow whose nodes come in pairs with one natural job name
(``rel_tasks.clashing``: values joined with ``_``, characters sanitised away), two of
them failing: after the last ``resume`` exactly those two are FAILED, every other node
is DONE with its side effect once, and no node took another's result.
"""

from __future__ import annotations

import random
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
    read_store,
    start,
    wait_for,
)

from gristmill.store.db import STORE_NAME

N = 40  # nodes of each trial's workflow


def run_args(shared: Path, root: Path, seed: int, n: int = N) -> list[str]:
    return ["run", "rel_tasks:stages", "--path", str(shared), "--n", str(n), "--seed", str(seed),
            "--pause", "0.03", "--run-dir", str(root), "--max-cores", "4"]


def killed(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """The engine died of SIGKILL (the fault hook fired), not of anything else."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, err.decode()


def finish(procs: list[subprocess.Popen[bytes]], run_dir: Path, shared: Path, n: int = N) -> None:
    """Resume without faults, then check the run is complete and each effect ran once."""
    proc = start(procs, "resume", str(run_dir), "--max-cores", "4")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert f"succeeded (DONE={n})" in out.decode()
    check_complete(run_dir, shared, n)


def check_complete(run_dir: Path, shared: Path, n: int = N) -> None:
    once_each(shared, [str(i) for i in range(n)])
    counts, attempts = read_store(run_dir)
    assert counts == {("quick_effect", "DONE"): n}
    succeeded = [a.identity for a in attempts if a.state == "SUCCEEDED"]
    assert len(succeeded) == len(set(succeeded)) == n  # one SUCCEEDED attempt per node
    assert [a.key for a in attempts if a.ended is None] == []  # no attempt left open
    others = {a.state for a in attempts if a.state != "SUCCEEDED"}
    assert others <= {"LOST"}, others  # only unconfirmed submissions, rerun
    for attempt in attempts:
        assert "not confirmed" in attempt.reason or attempt.state == "SUCCEEDED"
    for pid in {int(a.job_id.split(".")[0]) for a in attempts if a.job_id}:
        assert pid_gone(pid, timeout=15), f"supervisor {pid} of an earlier engine still runs"


#: The clashing workflow: its size (a multiple of 4) and the index of the failing pair.
CLASH_N, CLASH_FAIL = 40, "3"


def clash_args(shared: Path, root: Path) -> list[str]:
    return ["run", "rel_tasks:clashing", "--path", str(shared), "--n", str(CLASH_N),
            "--fail", CLASH_FAIL, "--run-dir", str(root), "--max-cores", "4"]


def finish_clashing(procs: list[subprocess.Popen[bytes]], run_dir: Path, shared: Path) -> None:
    """Resume without faults: the run fails with exactly the two failing nodes FAILED."""
    from rel_tasks import clashing_effects

    proc = start(procs, "resume", str(run_dir), "--max-cores", "4")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err.decode()
    once_each(shared, clashing_effects(CLASH_N, CLASH_FAIL))
    counts, attempts = read_store(run_dir)
    half = CLASH_N // 2
    assert counts == {("pair_effect", "DONE"): half - 1, ("pair_effect", "FAILED"): 1,
                      ("label_effect", "DONE"): half - 1, ("label_effect", "FAILED"): 1}
    assert [a.key for a in attempts if a.ended is None] == []
    failing = {("--first", CLASH_FAIL), ("--label", f"{CLASH_FAIL}:x")}
    for attempt in attempts:
        fails = any(pair in zip(attempt.argv, attempt.argv[1:]) for pair in failing)
        if attempt.state == "LOST":
            assert "not confirmed" in attempt.reason
        else:  # each attempt recorded its own node's outcome, never its namesake's
            assert attempt.state == ("FAILED" if fails else "SUCCEEDED"), attempt
    succeeded = [a.identity for a in attempts if a.state == "SUCCEEDED"]
    assert len(succeeded) == len(set(succeeded)) == CLASH_N - 2
    names = {a.job_name for a in attempts}
    assert len(names) == CLASH_N  # one name per node, every pair told apart
    for pid in {int(a.job_id.split(".")[0]) for a in attempts if a.job_id}:
        assert pid_gone(pid, timeout=15), f"supervisor {pid} of an earlier engine still runs"


# -- one case per fault point (fast) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "lost"),
    [
        pytest.param("persist:1", False, marks=pytest.mark.reliability),
        pytest.param("submit:2", True, marks=pytest.mark.reliability),
        ("after_submit:2", False),
        ("status:4", False),
    ],
)
def test_a_kill_at_each_point_is_resumed_exactly_once(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], fault: str, lost: bool
) -> None:
    """A batch recorded but never handed over is LOST (and rerun); one handed over is adopted."""
    shared, root = tmp_path / "shared", tmp_path / "runs"
    killed(start(engines, *run_args(shared, root, seed=7), env={"GRISTMILL_FAULT": fault}))
    run_dir = latest(root)
    assert (run_dir / STORE_NAME).exists()
    if fault == "persist:1":
        assert lines(shared) == []  # killed before any task could start
    finish(engines, run_dir, shared)
    _, attempts = read_store(run_dir)
    assert any(a.state == "LOST" for a in attempts) == lost


@pytest.mark.parametrize(
    "fault", ["after_submit:1", pytest.param("status:3", marks=pytest.mark.reliability)])
def test_a_kill_with_clashing_names_resumes_to_exactly_the_failing_nodes(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], fault: str
) -> None:
    shared, root = tmp_path / "shared", tmp_path / "runs"
    killed(start(engines, *clash_args(shared, root), env={"GRISTMILL_FAULT": fault}))
    finish_clashing(engines, latest(root), shared)
    listed = gristmill("tasks", str(latest(root)), "--limit", "1000")
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len({row[0] for row in rows}) == len(rows) == CLASH_N


@pytest.mark.reliability
def test_a_kill_while_a_resume_reconciles_is_resumed_again(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    shared, root = tmp_path / "shared", tmp_path / "runs"
    killed(start(engines, *run_args(shared, root, seed=3), env={"GRISTMILL_FAULT": "status:3"}))
    run_dir = latest(root)
    killed(start(engines, "resume", str(run_dir), env={"GRISTMILL_FAULT": "reconcile:1"}))
    finish(engines, run_dir, shared)


# -- seeded trials (slow) -----------------------------------------------------------------------

#: (point, largest n that every run of the workflow reaches)
POINTS = [("persist", 1), ("submit", 5), ("after_submit", 5), ("status", 20)]


def seeded_kills(
    engines: list[subprocess.Popen[bytes]], rng: random.Random, command: list[str], root: Path,
    shared: Path, side_effects: int, resumed_ok: tuple[int, ...],
) -> Path:
    """Up to three kills, chained across resumes: at hook points and by timing; the run dir.

    ``side_effects`` bounds the timing kills (the workflow makes at least that many);
    ``resumed_ok`` are the exit codes a resume that outran its kill point may end with.
    """
    run_dir: Path | None = None
    for _ in range(rng.choice([1, 2, 3])):
        if rng.random() < 0.7:
            point, most = rng.choice(POINTS if run_dir is None else [*POINTS[1:],
                                                                      ("reconcile", 1)])
            fault = f"{point}:{rng.randint(1, most)}"
            proc = start(engines, *command, env={"GRISTMILL_FAULT": fault})
            if run_dir is None:
                killed(proc)  # a fresh run reaches every point often enough
            else:  # a resume has less left to do, and may finish before the point
                _, err = proc.communicate(timeout=60)
                assert proc.returncode in (-signal.SIGKILL, *resumed_ok), err.decode()
        else:  # by timing, once some side effects happened
            proc = start(engines, *command)
            target = rng.randint(1, side_effects)
            wait_for(lambda: len(lines(shared)) >= target or proc.poll() is not None,  # noqa: B023
                     60, f"{target} side effects")
            time.sleep(rng.uniform(0.0, 0.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        if run_dir is None:
            run_dir = latest(root)
            command = ["resume", str(run_dir), "--max-cores", "4"]
    assert run_dir is not None
    return run_dir


@pytest.mark.reliability
@pytest.mark.parametrize("seed", range(40))
def test_seeded_kills_then_resume_runs_each_task_exactly_once(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], seed: int
) -> None:
    """Up to three kills per trial: hook points, and SIGKILL by timing, chained across resumes."""
    rng = random.Random(1000 + seed)
    shared, root = tmp_path / "shared", tmp_path / "runs"
    command = run_args(shared, root, seed=seed)
    run_dir = seeded_kills(engines, rng, command, root, shared, N - 4, (0,))
    finish(engines, run_dir, shared)


@pytest.mark.reliability
@pytest.mark.parametrize("seed", range(20))
def test_seeded_kills_of_a_run_with_clashing_names_then_resume(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], seed: int
) -> None:
    """As the seeded trials above, over the clashing workflow: kills at hook points and by
    timing, chained across resumes, and never a node recorded with its namesake's outcome."""
    rng = random.Random(2000 + seed)
    shared, root = tmp_path / "shared", tmp_path / "runs"
    command = clash_args(shared, root)
    run_dir = seeded_kills(engines, rng, command, root, shared, CLASH_N - 6, (1,))
    finish_clashing(engines, run_dir, shared)


@pytest.mark.reliability
@pytest.mark.parametrize("trial", range(12))
def test_a_kill_between_handing_jobs_over_and_recording_them_loses_none(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], trial: int
) -> None:
    """The narrowest window, hit again and again, resumed at once: the jobs the backend
    got run exactly once (the orphaned supervisor names them in ``.handle`` files), and
    none is taken for unsubmitted and run twice."""
    shared, root = tmp_path / "shared", tmp_path / "runs"
    fault = f"after_submit:{1 + trial % 3}"
    killed(start(engines, *run_args(shared, root, seed=trial), env={"GRISTMILL_FAULT": fault}))
    finish(engines, latest(root), shared)
    _, attempts = read_store(latest(root))
    assert not any(a.state == "LOST" for a in attempts)
