"""The array-element runner (``python -m gristmill.backends.batch.element``).

The tests start the real runner in a child process, as a Slurm batch script would,
with the array variables Slurm sets; it runs the element under the real worker wrapper.
What is scheduler-specific comes from the manifest: here, the Slurm backend's own
block (its id variables, its log and the rules that read it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from gm_testing import job_request, subprocess_env

from gristmill.backends.base import JobRequest
from gristmill.backends.batch.arrays import Array, element_command, write_manifest
from gristmill.backends.batch.element import read_manifest, verdict
from gristmill.backends.slurm.backend import STOP_RULES, SlurmBackend, job_log
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import read_result

SMALL = Resources(mem="1G", cores=1)


# -- the element runner ------------------------------------------------------------------------

RUNNER = [sys.executable, "-m", "gristmill.backends.batch.element"]


def slurm_block(log_dir: Path) -> dict[str, Any]:
    """What the Slurm backend writes into each manifest it submits (see test_slurm.py)."""
    return {"job_env": SlurmBackend.id_env[0], "task_env": SlurmBackend.id_env[1],
            "stop_log": str(job_log(log_dir, "{id}")), "stop_rules": STOP_RULES}


def manifest(tmp_path: Path, *jobs: JobRequest) -> Path:
    path = tmp_path / "logs" / jobs[0].task / "array.json"
    array = Array(jobs[0].task, SMALL, jobs)
    write_manifest(array, path, scheduler=slurm_block(array.log_dir))
    return path


def element_env(job: str = "77", task: str = "1", **extra: str) -> dict[str, str]:
    env = subprocess_env()
    env.update({"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": task, **extra})
    return env


def test_the_runner_runs_its_element_under_the_worker(tmp_path: Path) -> None:
    script = "import os, sys; print(os.environ['SEED'], os.getcwd()); sys.exit(int(sys.argv[1]))"
    jobs = [job_request(tmp_path, i, argv=(sys.executable, "-c", script, str(i + 2)),
                    env=(("SEED", f"seed{i}"),), cwd=tmp_path) for i in range(2)]
    path = manifest(tmp_path, *jobs)
    done = subprocess.run([*RUNNER, str(path), "1"], env=element_env(), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert jobs[1].stdout.read_text() == f"seed1 {tmp_path}\n"
    result = read_result(jobs[1].result_path, key=jobs[1].key)
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.FAILED, 3)
    assert result.key == jobs[1].key  # the manifest's key names the attempt in its result
    assert Path(f"{jobs[1].result_path}.handle").read_text() == "77_1\n"
    assert not jobs[0].result_path.exists()  # only the element named by the index ran


def test_a_manifest_with_runtimes_makes_the_wrapper_stop_the_whole_task(
    tmp_path: Path,
) -> None:
    """Grid Engine's h_rt kills only the job's group: the wrapper must stop the task's."""
    res = Resources(runtime=1)
    nap = f"60.{os.getpid()}{time.monotonic_ns() % 10**6}"  # a cmdline only this test has
    job = attrs.evolve(job_request(tmp_path, 0, argv=("bash", "-c", f"sleep {nap} & wait")),
                       resources=res)
    path = tmp_path / "logs" / job.task / "array.json"
    write_manifest(Array(job.task, res, (job,)), path, runtime=True,
                   scheduler={"job_env": "JOB_ID", "task_env": "SGE_TASK_ID"})
    assert read_manifest(path, 0)[0]["runtime"] == 1
    started = time.monotonic()
    done = subprocess.run([*RUNNER, str(path), "0"], env=element_env(JOB_ID="5",
                          SGE_TASK_ID="1"), capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 20
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is JobState.TIMEOUT, result
    assert done.returncode == 128 + signal.SIGTERM
    assert "exceeded runtime" in result.reason
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit()
            and _cmdline(p) == f"sleep\0{nap}\0".encode()]
    assert left == [], "the task's background child outlived the timeout"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_runner_succeeds_with_its_element(tmp_path: Path) -> None:
    job = job_request(tmp_path, 0, argv=("echo", "hello"))
    done = subprocess.run([*RUNNER, str(manifest(tmp_path, job)), "0"], env=element_env(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is JobState.SUCCEEDED
    assert job.stdout.read_text() == "hello\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "usage: python -m gristmill.backends.batch.element MANIFEST INDEX"),
     (["/nonexistent/array.json", "0"], "cannot read array element"),
     (["MANIFEST", "5"], "no element 5 (the array has 1)"),
     (["MANIFEST", "x"], "cannot read array element")],
)
def test_the_runner_explains_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    path = manifest(tmp_path, job_request(tmp_path, 0))
    argv = [str(path) if a == "MANIFEST" else a for a in args]
    done = subprocess.run([*RUNNER, *argv], env=element_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert message in done.stderr


def _wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


KILL_LINE = "slurmstepd-vm: error: *** JOB 78 ON vm CANCELLED AT 2026-11-29T09:16:34{} ***\n"


@pytest.mark.parametrize(
    ("log", "target", "state", "reason"),
    [
        # Slurm's time limit: the line first, then SIGTERM to every process of the job.
        (KILL_LINE.format(" DUE TO TIME LIMIT"), "runner", JobState.TIMEOUT, "time limit"),
        (KILL_LINE.format(" DUE TO TIME LIMIT"), "task", JobState.TIMEOUT, "time limit"),
        # scancel: the task may die of the signal before the wrapper sees its own.
        (KILL_LINE.format(""), "task", JobState.CANCELLED, "scancel"),
        (KILL_LINE.format(""), "runner", JobState.CANCELLED, "cancelled"),
        # Somebody else's SIGTERM: no line, the wrapper's verdict stands.
        ("", "task", JobState.FAILED, "SIGTERM"),
        ("", "runner", JobState.CANCELLED, "cancelled"),
    ],
)
def test_a_signalled_element_ends_as_slurms_log_says(
    tmp_path: Path, log: str, target: str, state: JobState, reason: str
) -> None:
    pidfile = tmp_path / "task.pid"
    job = job_request(tmp_path, 0, argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = manifest(tmp_path, job)
    if log:
        (path.parent / "slurm-78_0.out").write_text(log)
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=element_env("78", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(pidfile)
        pid = runner.pid if target == "runner" else int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is state
    assert reason in result.reason
    assert result.signal == signal.SIGTERM
    assert result.key == job.key  # the rewritten result still names its attempt


@pytest.mark.parametrize("why", [" DUE TO PREEMPTION", " DUE TO JOB REQUEUE"])
def test_a_preempted_or_requeued_element_leaves_no_result_for_slurm_to_decide(
    tmp_path: Path, why: str
) -> None:
    """Slurm may run the job again under the same id: a result of the stopped run would be
    taken for the attempt's end; the scheduler's PREEMPTED (or its queue) says instead."""
    pidfile = tmp_path / "task.pid"
    job = job_request(tmp_path, 0, argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = manifest(tmp_path, job)
    (path.parent / "slurm-78_0.out").write_text(KILL_LINE.format(why))
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=element_env("78", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(pidfile)
        os.kill(runner.pid, signal.SIGTERM)
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert not job.result_path.exists()
    assert Path(f"{job.result_path}.handle").read_text() == "78_0\n"


def test_a_requeued_element_starts_without_its_earlier_runs_result(tmp_path: Path) -> None:
    """The earlier run's result (here: it was stopped) is gone as soon as the element runs
    again, and the new run's own result replaces it."""
    release = tmp_path / "release"
    job = job_request(tmp_path, 0, argv=(
        "sh", "-c", f"while [ ! -e {release} ]; do sleep 0.05; done; exit 4"))
    path = manifest(tmp_path, job)
    job.result_path.parent.mkdir(parents=True, exist_ok=True)
    job.result_path.write_text("{}")  # whatever the stopped run left
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=element_env("78", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while job.result_path.exists():
            assert time.monotonic() < deadline, "the earlier run's result stayed"
            time.sleep(0.02)
        release.touch()
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.FAILED, 4)


def test_outside_slurm_the_wrappers_verdict_stands(tmp_path: Path) -> None:
    pidfile = tmp_path / "task.pid"
    job = job_request(tmp_path, 0, argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = manifest(tmp_path, job)
    (path.parent / "slurm-78_0.out").write_text(KILL_LINE.format(" DUE TO TIME LIMIT"))
    env = subprocess_env()  # no SLURM_ARRAY_* variables: e.g. Grid Engine
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        _wait_for(pidfile)
        os.kill(runner.pid, signal.SIGTERM)
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is JobState.CANCELLED
    assert not Path(f"{job.result_path}.handle").exists()


def test_a_manifest_of_gristmill_0_1_still_runs(tmp_path: Path) -> None:
    """Version 1 had no scheduler block: the ids come from Slurm's or Grid Engine's names."""
    job = job_request(tmp_path, 0, argv=("echo", "old"))
    path = tmp_path / "array.json"
    path.write_text(json.dumps({"version": 1, "task": "fit", "jobs": [
        {"key": job.key, "runtime": None, "argv": list(job.argv), "stdout": str(job.stdout),
         "stderr": str(job.stderr), "result": str(job.result_path), "env": {}, "cwd": None}]}))
    env = {k: v for k, v in element_env().items() if not k.startswith("SLURM_")}
    done = subprocess.run([*RUNNER, str(path), "0"], env={**env, "JOB_ID": "9",
                          "SGE_TASK_ID": "1"}, capture_output=True, timeout=30)
    assert done.returncode == 0
    assert Path(f"{job.result_path}.handle").read_text() == "9_1\n"
    assert job.stdout.read_text() == "old\n"
    result = read_result(job.result_path, key=job.key)  # its entries had keys already
    assert result is not None
    assert result.key == job.key


@pytest.mark.parametrize("path", ["gristmill.backends.arrays", "gristmill.backends.batch.element"])
def test_the_old_module_path_runs_elements_too(tmp_path: Path, path: str) -> None:
    job = job_request(tmp_path, 0, argv=("echo", "hi"))
    done = subprocess.run([sys.executable, "-m", path, str(manifest(tmp_path, job)), "0"],
                          env=element_env(), capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None),
     ("x *** JOB 1 ON h CANCELLED AT t DUE TO TIME LIMIT ***", ("TIMEOUT", "time")),
     ("*** JOB 1 ON h CANCELLED AT t DUE TO TIME LIMIT ***\n"
      "*** JOB 1 ON h CANCELLED AT t ***", ("CANCELLED", "scancel")),
     ("*** JOB 1 ON h CANCELLED AT t DUE TO NODE FAILURE ***", None),
     ("*** JOB 1 ON h CANCELLED AT t ***\nexceeded memory limit", ("OOM", "memory"))],
)
def test_verdict_takes_the_first_rule_that_matches_by_its_last_match(
    text: str, expected: tuple[str, str] | None
) -> None:
    found = verdict(text, STOP_RULES)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == expected[0]
        assert expected[1] in found[1]


def test_the_batch_line_runs_isolated_from_a_shadowing_module_in_the_job_directory(
    tmp_path: Path,
) -> None:
    """The scheduler starts the element in the user's directory: a types.py there (or on
    PYTHONPATH) must not be imported by the wrapper."""
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "shadow-imported"
    for name in ("types", "json", "signal"):
        (project / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r})\nraise SystemExit('shadowed')\n")
    job = job_request(tmp_path, 0, argv=("echo", "isolated"))
    line = element_command(sys.executable, manifest(tmp_path, job), "SLURM_ARRAY_TASK_ID")
    env = {**element_env("5", "0"), "PYTHONPATH": str(project)}
    done = subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert job.stdout.read_text() == "isolated\n"
    assert not marker.exists()
